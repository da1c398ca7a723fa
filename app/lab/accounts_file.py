"""Lab accounts from a TOML file in the data dir, created with the defaults on first run."""

from __future__ import annotations

import tomllib
from pathlib import Path

from app.world.accounts import DEFAULT_ACCOUNTS, LAB_DOMAINS, Accounts

TEMPLATE = """# MailFlow Lab accounts for the lab listeners (log in with the full address).
# Only addresses in the lab domains (a.example, b.example) can exist.
[accounts]
{lines}
"""


class AccountsFileError(ValueError):
    pass


def load_accounts(path: Path) -> Accounts:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "\n".join(f'"{user}" = "{pw}"' for user, pw in DEFAULT_ACCOUNTS.items())
        path.write_text(TEMPLATE.format(lines=lines), "utf-8")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AccountsFileError(f"{path}: not valid TOML ({exc})") from None
    accounts = data.get("accounts")
    if not isinstance(accounts, dict) or not accounts:
        raise AccountsFileError(f"{path}: needs an [accounts] table with at least one entry")
    passwords = {}
    for user, password in accounts.items():
        domain = user.rpartition("@")[2].lower()
        if domain not in LAB_DOMAINS or not isinstance(password, str) or not password:
            raise AccountsFileError(
                f"{path}: '{user}' must be an address in a lab domain with a password"
            )
        passwords[user.lower()] = password
    return Accounts(passwords)

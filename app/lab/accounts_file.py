"""Lab accounts from a TOML file in the data dir, created with the defaults on first run."""

from __future__ import annotations

import os
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
        # Owner-only from the first byte: the file holds the accounts' passwords.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(TEMPLATE.format(lines=lines))
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # one an earlier version wrote 0644 is tightened
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

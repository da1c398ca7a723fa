"""Lab accounts: who may log in, with which password, and which domains are ours."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

LAB_DOMAINS = frozenset({"a.example", "b.example"})

DEFAULT_ACCOUNTS = {
    "alice@a.example": "alice-pass",
    "bob@b.example": "bob-pass",
}


@dataclass
class Accounts:
    passwords: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ACCOUNTS))
    domains: frozenset[str] = LAB_DOMAINS

    def check(self, user: str, password: str) -> bool:
        expected = self.passwords.get(user.lower())
        if expected is None:
            # Compare anyway so a wrong user and a wrong password take the same time.
            hmac.compare_digest(password.encode(), b"x" * 16)
            return False
        return hmac.compare_digest(password.encode(), expected.encode())

    def password(self, user: str) -> str | None:
        """The clear password, needed by APOP (RFC 1939 §7) to compute the digest."""
        return self.passwords.get(user.lower())

    def exists(self, address: str) -> bool:
        return address.lower() in self.passwords

    def is_lab_domain(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() in self.domains

    @property
    def users(self) -> list[str]:
        return sorted(self.passwords)

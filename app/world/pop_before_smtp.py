"""POP before SMTP: the practice from before SMTP-AUTH was common.

A successful POP3 login proves the user owns a mailbox, so the mail server lets
that client's IP address relay for a few minutes. It trusts an address, not a
person: anyone behind the same NAT in that window may relay too, which is why
SMTP-AUTH on 587 (RFC 6409, RFC 4954) replaced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

from app.events import Tap
from app.notes import note

DEFAULT_WINDOW = 600.0  # seconds a login keeps the door open (commonly 5-10 minutes)


@dataclass
class PopBeforeSmtp:
    window: float = DEFAULT_WINDOW
    translate: Callable[[str], str] = lambda ip: ip  # loopback peer -> simulated address
    clock: Callable[[], float] = time.time
    relay_actor: str = "mta-a"
    relay_host: str = "mail.a.example"
    _open: dict[str, float] = field(default_factory=dict)  # ip -> until

    def logged_in(self, user: str, peer: str, tap: Tap) -> None:
        """The POP3 server's login hook: open relaying from this address for a while."""
        ip = self.translate(peer)
        until = self.clock() + self.window
        self._open[ip] = until
        text, detail = note(
            (
                "popbsmtp.open",
                {
                    "ip": ip,
                    "user": user,
                    "relay": self.relay_host,
                    "until": formatdate(until, localtime=False),
                    "minutes": int(self.window // 60),
                },
            )
        )
        tap.note(text, "popbsmtp.open", dst=self.relay_actor, detail=detail)

    def allowed(self, ip: str) -> bool:
        until = self._open.get(ip)
        return until is not None and until > self.clock()

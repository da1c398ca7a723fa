"""What one run of a scenario knows besides the world: its mails, the language, and
what the scripted clients remember between actions (fetched messages, UIDLs seen,
connections they keep open on purpose)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunContext:
    mail: dict[str, Any]
    lang: str
    mails: dict[str, dict[str, Any]] = field(default_factory=dict)
    # actor -> raw messages its MUA downloaded, in order (for decoding, decrypting)
    fetched: dict[str, list[bytes]] = field(default_factory=dict)
    # actor -> POP3 unique ids it already has ("leave mail on server")
    uidls_seen: dict[str, set[str]] = field(default_factory=dict)
    # endpoint name -> connections a client keeps open across actions (IMAP IDLE)
    held: dict[str, int] = field(default_factory=dict)
    background: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    # anything a step hands to a later one (e.g. the ZIP password a path reader found)
    notes: dict[str, Any] = field(default_factory=dict)

    def mail_for(self, params: dict[str, Any]) -> dict[str, Any]:
        """The scenario's [mail], overlaid with [mails.<name>] when an action names one."""
        name = params.get("mail")
        if not name:
            return self.mail
        if name not in self.mails:
            raise KeyError(f"no [mails.{name}] in the scenario")
        return {**self.mail, **self.mails[name]}

    def hold(self, endpoint: str, delta: int) -> None:
        self.held[endpoint] = max(0, self.held.get(endpoint, 0) + delta)

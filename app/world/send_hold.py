"""送信保留 (send hold): the MSA keeps each accepted mail in its outgoing queue for a
while before the relaying MTA may send it, so a sender who notices a wrong recipient
can still cancel it (a site policy, like Postfix's hold queue; no RFC requires it).

The mail really sits in the queue (app/world/spool.py) the whole time; the relaying
MTA asks `ready` before it takes an entry, and `cancel` really removes the entry.
The clock is injectable: a scenario cannot wait five minutes, so it moves the
clock on (`advance`) the way time would pass, and the same rule decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

from app.events import PANEL_SUBMIT, Sink, Tap
from app.notes import note
from app.world.spool import QueuedMail, Spool


def _clock_text(at: float) -> str:
    return formatdate(at, localtime=False)


@dataclass
class SendHold:
    seconds: int
    sink: Sink
    actor: str = "msa-a"
    clock: Callable[[], float] = time.time
    _offset: float = 0.0  # how far the scenario moved the clock on
    _release: dict[str, float] = field(default_factory=dict)  # qid -> earliest send time

    def now(self) -> float:
        return self.clock() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def _tap(self, client: str) -> Tap:
        # Notes, not protocol lines: the hold and its cancelling are the MSA's own
        # queue handling (a web page or a command), not part of SMTP.
        return Tap(self.sink, PANEL_SUBMIT, client, self.actor, "QUEUE", None)

    def queued(self, entry: QueuedMail) -> None:
        """The MSA accepted `entry`: it may leave only after the hold."""
        release = self.now() + self.seconds
        self._release[entry.qid] = release
        text, detail = note(
            (
                "hold.queued",
                {
                    "qid": entry.qid,
                    "seconds": self.seconds,
                    "rcpts": ", ".join(entry.rcpt_tos),
                    "until": _clock_text(release),
                },
            )
        )
        self._tap("mua-alice").note(text, "hold.queued", detail=detail)

    def ready(self, entry: QueuedMail, relay_actor: str) -> bool:
        """Whether the relaying MTA may take `entry` now (notes it when not)."""
        release = self._release.get(entry.qid)
        if release is None or self.now() >= release:
            self._release.pop(entry.qid, None)
            return True
        text, detail = note(
            ("hold.waiting", {"qid": entry.qid, "seconds": round(release - self.now())})
        )
        Tap(self.sink, PANEL_SUBMIT, relay_actor, self.actor, "QUEUE", None).note(
            text, "hold.waiting", src=relay_actor, dst=relay_actor, detail=detail
        )
        return False

    def cancel(self, spool: Spool, rcpt: str, who: str) -> QueuedMail | None:
        """The sender cancels the held mail to `rcpt`: it leaves the queue unsent."""
        tap = self._tap(who)
        text, detail = note(("hold.cancel", {"rcpt": rcpt}))
        tap.note(text, "hold.cancel", src=who, dst=self.actor, detail=detail)
        for entry in spool.entries():
            if rcpt in entry.rcpt_tos and self._release.get(entry.qid, 0) > self.now():
                spool.remove(entry.qid)
                del self._release[entry.qid]
                text, detail = note(("hold.cancelled", {"qid": entry.qid}))
                tap.note(text, "hold.cancelled", detail=detail)
                return entry
        text, detail = note(("hold.too_late", {"rcpt": rcpt}))
        tap.note(text, "hold.too_late", detail=detail)
        return None

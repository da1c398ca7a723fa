"""The one event type every protocol line, DNS answer and mailbox change becomes.

Engines emit events through a `Tap`; the recorder numbers them; the web layer only
renders them. Nothing downstream invents or edits the text of an event.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

Direction = Literal["c2s", "s2c", "note"]

# Panels of the journey: 1 submission, 2 relay, 3 delivery, 4 retrieval.
PANEL_SUBMIT, PANEL_RELAY, PANEL_DELIVER, PANEL_FETCH = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    session: str  # the protocol session (one TCP connection, one DNS lookup, ...)
    panel: int
    src: str  # actor id of the sender of this line, e.g. "mua-alice"
    dst: str
    protocol: str  # SMTP, LMTP, DNS, POP3, IMAP, TLS, MAILDIR
    port: int | None  # the standard port this conversation models
    tls: bool  # travelled inside TLS (shown decrypted)
    direction: Direction
    text: str  # the raw text exchanged, CRLF replaced by "\n"
    key: str  # explanation key in app/content/explanations
    detail: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


Sink = Callable[[Event], None]


class Recorder:
    """Collects events in order and numbers them; optionally forwards each one."""

    def __init__(self, forward: Sink | None = None) -> None:
        self.events: list[Event] = []
        self._seq = itertools.count(1)
        self._forward = forward

    def emit(self, event: Event) -> None:
        numbered = renumber(event, next(self._seq))
        self.events.append(numbered)
        if self._forward is not None:
            self._forward(numbered)


def renumber(event: Event, seq: int) -> Event:
    # Event is frozen: a copy with the sink's number. Spelled out, because replace()
    # looks up the fields on every call and costs twice as much on the lab's hot path.
    e = event
    return Event(
        seq, e.session, e.panel, e.src, e.dst, e.protocol, e.port, e.tls, e.direction,
        e.text, e.key, e.detail,
    )  # fmt: skip


_session_ids = itertools.count(1)


def new_session_id(prefix: str) -> str:
    return f"{prefix}{next(_session_ids)}"


@dataclass(slots=True)
class Tap:
    """One conversation's view onto the sink: fixes actors, protocol, panel and port.

    Engines call `client(...)` for what the client sent and `server(...)` for what
    the server answered; `note(...)` is for facts observed on the side (a TLS
    handshake finishing, a file appearing in a Maildir).
    """

    sink: Sink
    panel: int
    client_actor: str
    server_actor: str
    protocol: str
    port: int | None
    session: str = field(default_factory=lambda: new_session_id("s"))
    tls: bool = False

    def client(self, text: str, key: str, detail: dict[str, str] | None = None) -> None:
        self._emit(self.client_actor, self.server_actor, "c2s", text, key, detail)

    def server(self, text: str, key: str, detail: dict[str, str] | None = None) -> None:
        self._emit(self.server_actor, self.client_actor, "s2c", text, key, detail)

    def note(
        self,
        text: str,
        key: str,
        *,
        src: str | None = None,
        dst: str | None = None,
        protocol: str | None = None,
        detail: dict[str, str] | None = None,
    ) -> None:
        self.sink(
            Event(
                seq=0,
                session=self.session,
                panel=self.panel,
                src=src or self.server_actor,
                dst=dst or self.client_actor,
                protocol=protocol or self.protocol,
                port=self.port,
                tls=self.tls,
                direction="note",
                text=text,
                key=key,
                detail=dict(detail or {}),
            )
        )

    def _emit(
        self,
        src: str,
        dst: str,
        direction: Direction,
        text: str,
        key: str,
        detail: dict[str, str] | None,
    ) -> None:
        self.sink(
            Event(
                seq=0,
                session=self.session,
                panel=self.panel,
                src=src,
                dst=dst,
                protocol=self.protocol,
                port=self.port,
                tls=self.tls,
                direction=direction,
                text=text,
                key=key,
                detail=dict(detail or {}),
            )
        )


def wire_text(data: bytes) -> str:
    """Bytes on the wire as display text: CRLF becomes a newline, nothing else changes."""
    text = data.decode("utf-8", errors="replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    return text.replace("\r\n", "\n")

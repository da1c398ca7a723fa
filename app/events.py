"""The one event type every protocol line, DNS answer and mailbox change becomes.

Engines emit events through a `Tap`; the recorder numbers them; the web layer only
renders them. Nothing downstream invents or edits the text of an event.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

Direction = Literal["c2s", "s2c", "note"]

# Panels of the journey: 1 submission, 2 relay, 3 delivery, 4 retrieval.
PANEL_SUBMIT, PANEL_RELAY, PANEL_DELIVER, PANEL_FETCH = 1, 2, 3, 4


NO_DETAIL: Mapping[str, str] = MappingProxyType({})


class Event(NamedTuple):
    """A tuple, so it cannot be edited, and cheap to make: the lab makes tens per mail."""

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
    detail: Mapping[str, str] = NO_DETAIL

    def to_json(self) -> dict[str, object]:
        data = self._asdict()
        data["detail"] = dict(self.detail)
        return data


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
    """The same event with the sink's number."""
    return Event(seq, *event[1:])


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
                0, self.session, self.panel, src or self.server_actor, dst or self.client_actor,
                protocol or self.protocol, self.port, self.tls, "note", text, key,
                dict(detail) if detail else {},
            )
        )  # fmt: skip

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
                0, self.session, self.panel, src, dst, self.protocol, self.port, self.tls,
                direction, text, key, dict(detail) if detail else {},
            )
        )  # fmt: skip


def wire_text(data: bytes) -> str:
    """Bytes on the wire as display text: CRLF becomes a newline, nothing else changes."""
    text = data.decode("utf-8", errors="replace")
    if text.endswith("\r\n"):
        text = text[:-2]
    return text.replace("\r\n", "\n")

"""What the flow page shows, derived from a recording: panels, actors, summary.

Everything here is read off the recorded events; nothing is made up. Only the
labels (actor names, explanations) come from content, looked up by key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.events import Event
from app.explanations import Catalog, Explanation

ACTORS_FILE = Path(__file__).resolve().parent.parent / "content" / "actors.toml"
WIRE_PROTOCOLS = ("SMTP", "LMTP", "POP3", "IMAP")
# Left to right in each panel: the order in which the mail passes the actors.
JOURNEY_ORDER = (
    "mua-alice",
    "isp-fw",
    "host-x",
    "mta-evil",
    "host-bot",
    "mta-lookalike",
    "msa-a",
    "mta-a",
    "mda-a",
    "pop3-a",
    "imap-a",
    "dns",
    "path-reader",
    "mta-b",
    "mta-b2",
    "mda-b",
    "mailbox",
    "pop3-b",
    "imap-b",
    "mua-bob",
    "mua-bob-pc",
    "mua-bob-phone",
    "mua-carol",
    "mua-dave",
)
MAILBOX = "mailbox"  # app.engines.base.MAILBOX_ACTOR; one account's is "mailbox:<address>"


def _kind(actor: str) -> str:
    """The actor an account's mailbox stands in for: every mailbox sits where "mailbox" sits."""
    return MAILBOX if actor.startswith(MAILBOX + ":") else actor


def journey_position(actor: str) -> int:
    actor = _kind(actor)
    return JOURNEY_ORDER.index(actor) if actor in JOURNEY_ORDER else len(JOURNEY_ORDER)


@lru_cache(maxsize=1)
def actor_labels() -> dict[str, dict[str, str]]:
    return tomllib.loads(ACTORS_FILE.read_text("utf-8"))


def actor_label(actor: str, lang: str) -> str:
    info = actor_labels().get(actor)
    if info:
        return info.get(lang, actor)
    if _kind(actor) == MAILBOX:
        # An account the content does not name (the lab's own accounts).
        template = actor_labels()[MAILBOX].get(f"of_{lang}", "{address}")
        return template.format(address=actor.partition(":")[2])
    return actor


def actor_role(actor: str) -> str:
    info = actor_labels().get(actor) or actor_labels().get(_kind(actor))
    return info.get("role", actor) if info else actor


@dataclass(frozen=True)
class PanelView:
    number: int
    actors: tuple[str, ...]  # in order of first appearance
    protocols: tuple[str, ...]
    ports: tuple[int, ...]
    tls: bool
    first_step: int  # 1-based step of its first event; 0 when the story skips this stage

    @property
    def used(self) -> bool:
        return self.first_step > 0


# The four stages of the journey, drawn even when a story does not reach one of them,
# so the picture a learner builds stays the same from scenario to scenario.
STAGE_ACTORS = {
    1: ("mua-alice", "msa-a"),
    2: ("mta-a", "dns", "mta-b"),
    3: ("mta-b", "mda-b", "mailbox"),
    4: ("mailbox", "mua-bob"),
}


def panels(events: tuple[Event, ...] | list[Event]) -> list[PanelView]:
    found: dict[int, dict[str, list]] = {}
    for step, e in enumerate(events, start=1):
        p = found.setdefault(
            e.panel, {"actors": [], "protocols": [], "ports": [], "tls": [], "first": [step]}
        )
        for actor in (e.src, e.dst):
            if actor not in p["actors"]:
                p["actors"].append(actor)
        if e.protocol in WIRE_PROTOCOLS or e.protocol == "DNS":
            if e.protocol not in p["protocols"]:
                p["protocols"].append(e.protocol)
            if e.port is not None and e.port not in p["ports"] and e.protocol != "DNS":
                p["ports"].append(e.port)
        if e.tls:
            p["tls"].append(True)
    views = [
        PanelView(
            n,
            tuple(sorted(p["actors"], key=journey_position)),
            tuple(p["protocols"]),
            tuple(p["ports"]),
            bool(p["tls"]),
            p["first"][0],
        )
        for n, p in sorted(found.items())
    ]
    shown = {view.number for view in views}
    views += [
        PanelView(n, actors, (), (), False, 0)
        for n, actors in STAGE_ACTORS.items()
        if n not in shown
    ]
    return sorted(views, key=lambda view: view.number)


@dataclass(frozen=True)
class Hop:
    """One row of the summary card: who spoke to whom, how, on which port."""

    panel: int
    client: str
    server: str
    protocol: str
    port: int | None
    tls: bool


def hops(events: tuple[Event, ...] | list[Event]) -> list[Hop]:
    """One row per distinct real session: who opened it, who answered, over what.

    Only lines that crossed the wire (c2s, s2c) say who is client and server; notes
    (a TLS handshake, a Maildir change, a firewall's verdict) belong to a session
    but are not a conversation, so they never decide a row. TLS is on when any line
    of the session travelled inside TLS.
    """
    rows: dict[str, Hop] = {}
    tls: set[str] = set()
    for e in events:
        if e.tls:
            tls.add(e.session)
        if e.direction == "note" or (e.protocol not in WIRE_PROTOCOLS and e.protocol != "DNS"):
            continue
        if e.session not in rows:
            client, server = (e.src, e.dst) if e.direction == "c2s" else (e.dst, e.src)
            rows[e.session] = Hop(e.panel, client, server, e.protocol, e.port, False)
    # One row per distinct hop, not per connection.
    unique: dict[tuple, Hop] = {}
    for session, hop in rows.items():
        hop = Hop(hop.panel, hop.client, hop.server, hop.protocol, hop.port, session in tls)
        unique.setdefault((hop.panel, hop.client, hop.server, hop.protocol, hop.port, hop.tls), hop)
    return list(unique.values())


# A TLS handshake is explained by what started it, known from the standard port the
# conversation plays: STARTTLS for SMTP (RFC 3207, the key itself), STLS for POP3
# (RFC 2595), STARTTLS for IMAP (RFC 9051), or a port that is TLS from the first byte
# (RFC 8314).
_TLS_BY_PORT = {
    110: "tls.handshake.pop3",
    143: "tls.handshake.imap",
    465: "tls.handshake.implicit",
    993: "tls.handshake.implicit",
    995: "tls.handshake.implicit",
}


def explanation_key(event: Event) -> str:
    """The most specific explanation for an event: its key, refined by the protocol
    and port it belongs to where one key serves several (a Maildir change made by an
    IMAP session cites IMAP, not POP3)."""
    if event.key == "tls.handshake" and event.port is not None:
        return _TLS_BY_PORT.get(event.port, event.key)
    if event.key.startswith("maildir.") and event.protocol == "IMAP":
        return f"{event.key}.imap"
    return event.key


def explain(catalog: Catalog, event: Event) -> Explanation | None:
    return catalog.lookup(explanation_key(event)) or catalog.lookup(event.key)

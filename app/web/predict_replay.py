"""Bring a protocol core to the moment just before a recorded client line, then ask
it what the server would answer to the learner's line instead.

POP3 and IMAP use the real sans-IO cores (app/protocols/pop3.py, app/protocols/imap)
on a mirror of the mailboxes (app/web/predict_mirror.py); SMTP and LMTP use the
command-order core (app/protocols/smtp_order.py). Every probe is built fresh, so a
learner's wrong guess never changes what comes next.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from app.digits import is_digits
from app.events import Event
from app.protocols.imap import ImapConnection, Send
from app.protocols.pop3 import Action, POP3Connection
from app.protocols.smtp_order import LMTP, MX, Role, SmtpOrder
from app.web.predict_mirror import MirrorWorld, deliveries, logins, to_bytes

PROTOCOLS = ("SMTP", "LMTP", "POP3", "IMAP")
MAX_LINE = 1000  # a learner's typed line; longer is refused before any core sees it
# Refusals a policy gives (no such user, relay denied), never the order core's own codes.
POLICY_CODES = ("450", "451", "452", "550", "551", "554")
_UIDVALIDITY = re.compile(r"\[UIDVALIDITY (\d+)\]")
_BANNER = re.compile(r"<[^<>\s]+@[^<>\s]+>\s*$")


@dataclass(frozen=True, slots=True)
class Answer:
    text: str  # the reply as the server would send it, CRLF shown as a newline
    ok: bool  # the server went along (2xx/3xx, +OK, tagged OK, a continuation)


class Probe(Protocol):
    def ask(self, line: str) -> Answer: ...


def is_command(event: Event) -> bool:
    """A client command the learner can predict: not DATA content, not the final ".",
    not a SASL continuation line or IMAP's DONE, not a note."""
    if event.direction != "c2s" or event.protocol not in PROTOCOLS:
        return False
    tail = event.key.rsplit(".", 1)[-1]
    if event.key.endswith((".data.content", ".data.end", ".auth.response")):
        return False
    return tail not in ("done", "toolong")


def probe_at(events: Sequence[Event], index: int) -> Probe:
    """A core in the state the server was in when events[index] arrived."""
    target = events[index]
    if target.protocol in ("SMTP", "LMTP"):
        return _smtp_probe(events, index)
    return _mailbox_probe(events, index)


# -- SMTP / LMTP ----------------------------------------------------------------------


def _role(session: list[Event]) -> Role:
    """The server's part, read from what it said: LMTP, TLS, AUTH offered, 587/465."""
    greeting = next((e.text for e in session if e.direction == "s2c"), "220 localhost")
    hostname = greeting[4:].split(" ")[0] or "localhost"
    if session[0].protocol == "LMTP":
        return replace(LMTP, hostname=hostname)
    replies = "\n".join(e.text for e in session if e.direction == "s2c" and ".ehlo." in e.key)
    submission = session[0].port in (587, 465)
    mechanisms = re.search(r"250[- ]AUTH ([A-Z0-9 -]+)", replies)
    return Role(
        hostname=hostname,
        starttls=session[0].port != 465 and ("STARTTLS" in replies or not replies),
        implicit_tls=session[0].tls,
        auth_mechanisms=tuple(mechanisms.group(1).split())
        if mechanisms
        else (("PLAIN", "LOGIN") if submission else MX.auth_mechanisms),
        auth_required=submission,
    )


class _SmtpProbe:
    def __init__(self, core: SmtpOrder, refusals: dict[str, str]) -> None:
        self.core = core
        self.refusals = refusals

    def ask(self, line: str) -> Answer:
        reply = self.core.command(line)
        # Order allows it, but this server's policy said no to this very line in the
        # recording (relay denied, no such user): answer with what it really said.
        refused = self.refusals.get(_normal(line)) if reply.ok else None
        if refused is not None:
            return Answer(refused, False)
        return Answer(reply.text, reply.ok)


def _normal(line: str) -> str:
    return " ".join(line.upper().split())


def _refusals(events: Sequence[Event], target: Event) -> dict[str, str]:
    """MAIL and RCPT lines this server refused, with the reply. A policy can change
    (POP before SMTP opens relaying), so the latest outcome counts: earlier sessions,
    then this session's own lines; a later acceptance cancels a refusal."""
    found: dict[str, str] = {}
    for i, e in enumerate(events):
        if e.direction != "c2s" or e.dst != target.dst or e.protocol != target.protocol:
            continue
        if e.text[:4].upper() not in ("MAIL", "RCPT"):
            continue
        if e.seq >= target.seq and e.session != target.session:
            continue
        reply = next(
            (r for r in events[i + 1 :] if r.session == e.session and r.direction == "s2c"), None
        )
        if reply is None:
            continue
        if reply.text[:3] in POLICY_CODES:
            found[_normal(e.text)] = reply.text
        elif reply.text[:1] == "2":
            found.pop(_normal(e.text), None)
    return found


def _smtp_probe(events: Sequence[Event], index: int) -> _SmtpProbe:
    target = events[index]
    session = [e for e in events if e.session == target.session and e.protocol != "TLS"]
    world = MirrorWorld(logins(events))
    core = SmtpOrder(_role(session), world.authenticate)
    for i, e in enumerate(session):
        if e.seq >= target.seq:
            break
        if e.direction != "c2s":
            continue
        if e.key.endswith(".data.content"):
            continue
        if e.key.endswith(".data.end"):
            core.end_data()
            continue
        reply = next((r for r in session[i + 1 :] if r.direction == "s2c"), None)
        code = int(reply.text[:3]) if reply and is_digits(reply.text[:3]) else None
        core.replay(e.text, code)
        if e.text.strip().upper() == "STARTTLS" and code == 220:
            core.tls_started()  # the handshake happened for real; here we take it as done
    return _SmtpProbe(core, _refusals(events, target))


# -- POP3 / IMAP ------------------------------------------------------------------------


class _Pop3Probe:
    def __init__(self, conn: POP3Connection) -> None:
        self.conn = conn

    def ask(self, line: str) -> Answer:
        exchange = self.conn.receive_line(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return Answer(exchange.reply.text, exchange.reply.data.startswith(b"+"))


class _ImapProbe:
    def __init__(self, conn: ImapConnection) -> None:
        self.conn = conn

    def ask(self, line: str) -> Answer:
        outputs = self.conn.receive_data(line.encode("utf-8", "surrogateescape") + b"\r\n")
        data = b"".join(o.data for o in outputs if isinstance(o, Send))
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")
        return Answer(text, _imap_ok(text))


def _imap_ok(text: str) -> bool:
    if not text:
        return False
    last = text.rsplit("\n", 1)[-1]
    words = last.split(" ")
    return last.startswith("+") or (len(words) > 1 and words[0] != "*" and words[1] == "OK")


def _mailbox_probe(events: Sequence[Event], index: int) -> Probe:
    """Replay every POP3/IMAP session and delivery up to `index` on one mirror, so the
    target session sees the mailbox as the real one was (another device's changes too)."""
    target = events[index]
    validity = next(
        (m for e in events if e.protocol == "IMAP" and (m := _UIDVALIDITY.search(e.text))), None
    )
    world = MirrorWorld(logins(events), int(validity.group(1)) if validity else 1)
    arriving = {d.seq: d for d in deliveries(events)}
    cores: dict[str, POP3Connection | ImapConnection] = {}
    for e in events[:index]:
        if e.seq in arriving:
            world.deliver(arriving[e.seq])
        if e.protocol not in ("POP3", "IMAP"):
            continue
        conn = cores.get(e.session) or _new_core(e, events, world)
        cores[e.session] = conn
        if e.direction == "c2s":
            _feed(conn, e)
    conn = cores.get(target.session) or _new_core(target, events, world)
    return _Pop3Probe(conn) if isinstance(conn, POP3Connection) else _ImapProbe(conn)


def _new_core(
    e: Event, events: Sequence[Event], world: MirrorWorld
) -> POP3Connection | ImapConnection:
    greeting = next((g.text for g in events if g.session == e.session and g.direction == "s2c"), "")
    # The host name the real server greeted with (IMAP says it before "MailFlow").
    words = greeting.split(" ")
    host = words[words.index("MailFlow") - 1] if "MailFlow" in words[1:] else "localhost"
    if e.protocol == "POP3":
        banner = _BANNER.search(greeting)
        # The recorded APOP timestamp, so a recorded APOP digest still matches.
        return POP3Connection(
            world,
            hostname=host,
            tls_active=e.tls,
            tls_available=not e.tls,
            cleartext_login=_pop3_took_cleartext(e.session, events),
            banner_id=banner.group(0).strip() if banner else None,
        )
    return ImapConnection(world, hostname=host, tls_active=e.tls, starttls_available=not e.tls)


def _pop3_took_cleartext(session: str, events: Sequence[Event]) -> bool:
    """Was the recorded server one that takes a password before TLS (a scenario that
    shows it)? Its CAPA listed USER in clear, or it answered USER/PASS/AUTH in clear."""
    for e in events:
        if e.session != session or e.direction != "s2c" or e.tls:
            continue
        if e.key == "pop3.capa.ok" and "\nUSER\n" in e.text:
            return True
        if e.key.startswith(("pop3.user.", "pop3.pass.", "pop3.auth.")):
            return True
    return False


def _feed(conn: POP3Connection | ImapConnection, e: Event) -> None:
    line = to_bytes(e.text) + b"\r\n"
    if isinstance(conn, POP3Connection):
        exchange = conn.receive_line(line)
        if exchange.action is Action.START_TLS:
            conn.tls_started()  # STLS: the handshake is taken as done
        return
    conn.receive_data(line)  # IMAP's STARTTLS marks TLS active inside the core

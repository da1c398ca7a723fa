"""POP3 server protocol core (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).

Sans-IO, in the manner of h11: the adapter feeds received bytes in and gets back
`Exchange`s - each one complete client line, the exact reply bytes to send, and
what the adapter must do next (start TLS, close). No sockets, no asyncio, no clock
beyond building the greeting's APOP timestamp, and no disk:

    conn = POP3Connection(backend, defer_io=True)
    items = conn.receive_data(chunk)      # Exchanges, maybe ending in a StorageRequest
    items = conn.storage_done(result)     # the adapter did it off the loop: go on

With defer_io=False (tests, predict mode) the core calls the injected `POP3Backend`
itself, so the whole protocol can be tested against a dict.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from app.events import wire_text
from app.protocols import sasl
from app.protocols.pop3.backend import (
    MaildropInUse,
    OpenMaildrop,
    POP3Backend,
    ReadMessage,
    RemoveMessages,
    StorageRequest,
)
from app.protocols.pop3.wire import CRLF, dot_stuff, to_wire, uidl_of

MAX_LINE = 255  # RFC 2449 §4: a command line is at most 255 octets including CRLF
MAX_AUTH_LINE = 4096  # RFC 5034 §4: SASL responses are exempt from the 255 limit
MAX_FAILED_LOGINS = 3  # then the adapter hangs up; slows down password guessing
SHOWN_OVERLONG = 255  # how much of an over-long line we keep for display

CONTINUATION_KEY = "pop3.auth.continue"
NEEDS_TLS_KEY = "pop3.login.needs_tls"  # USER/PASS/AUTH refused before STLS
IN_USE_KEY = "pop3.login.in_use"  # the maildrop is locked by another session
TOOLONG_KEY = "pop3.toolong"

# Commands per RFC 1939 state; CAPA and QUIT are valid in both.
# Those that carry a password (or a PLAIN blob) in clear; APOP never does.
CLEARTEXT_LOGIN = frozenset({"USER", "PASS", "AUTH"})
AUTH_ONLY = frozenset({"USER", "PASS", "APOP", "AUTH", "STLS"})
TRANSACTION_ONLY = frozenset({"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"})
COMMANDS = AUTH_ONLY | TRANSACTION_ONLY | {"CAPA", "QUIT"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

T = TypeVar("T")


# -- what the core hands back -----------------------------------------------------


class State(Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


class Action(Enum):
    NONE = "none"
    START_TLS = "start_tls"  # send the reply, then run the TLS handshake
    CLOSE = "close"  # send the reply, then close the connection


@dataclass(frozen=True, slots=True)
class ClientLine:
    raw: bytes  # as received, line ending included (or a prefix, for over-long lines)
    key: str
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return wire_text(_strip_eol(self.raw))


@dataclass(frozen=True, slots=True)
class Pop3Reply:
    data: bytes  # exact wire bytes, CRLF-terminated
    key: str

    @property
    def text(self) -> str:
        return wire_text(self.data)


def busy_reply() -> Pop3Reply:
    """Sent instead of a greeting when the listener has no room."""
    return Pop3Reply(b"-ERR too many connections\r\n", "pop3.busy")


def internal_error_reply() -> Pop3Reply:
    """Sent before closing when the server itself failed (a bug, logged by the adapter)."""
    return Pop3Reply(b"-ERR [SYS/PERM] internal server error, closing connection\r\n", "pop3.bug")


def timeout_reply() -> Pop3Reply:
    return Pop3Reply(b"-ERR idle timeout\r\n", "pop3.timeout")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One client line and the server's complete answer to it."""

    command: ClientLine
    reply: Pop3Reply
    action: Action = Action.NONE
    removed: tuple[str, ...] = ()  # files removed in the UPDATE state (QUIT)
    login_failed: bool = False  # lets the adapter apply its delay policy
    updated: bool = False  # the UPDATE state ran (QUIT after login)


@dataclass(slots=True)
class _Message:
    number: int
    key: str
    size: int
    deleted: bool = False


@dataclass(slots=True)
class _Outcome:
    data: bytes
    action: Action = Action.NONE
    removed: tuple[str, ...] = ()
    login_failed: bool = False
    continuation: bool = False
    updated: bool = False
    key: str | None = None  # a reply key of its own instead of "<command>.ok/err"

    @property
    def ok(self) -> bool:
        return self.data.startswith(b"+OK")


def _strip_eol(raw: bytes) -> bytes:
    if raw.endswith(CRLF):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    return raw


def _status(status: bytes, text: str) -> bytes:
    # Pop3Reply text may echo client input: never let it smuggle a line break.
    clean = _CONTROL.sub("?", text).encode("utf-8", "replace")
    return status + b" " + clean + CRLF if clean else status + CRLF


def _ok(text: str) -> _Outcome:
    return _Outcome(_status(b"+OK", text))


def _err(text: str) -> _Outcome:
    return _Outcome(_status(b"-ERR", text))


def _multiline(first: str, body: bytes) -> _Outcome:
    """'+OK first', then the dot-stuffed CRLF body, then the terminating '.'."""
    return _Outcome(_status(b"+OK", first) + dot_stuff(body) + b".\r\n")


def _lines(items: list[str]) -> bytes:
    return b"".join(item.encode() + CRLF for item in items)


def _split_top(wire: bytes, count: int) -> bytes:
    """Header block, blank line, then the first `count` body lines (RFC 1939 TOP)."""
    if wire.startswith(CRLF):
        head, body = CRLF, wire[2:]
    else:
        end = wire.find(b"\r\n\r\n")
        head, body = (wire, b"") if end < 0 else (wire[: end + 4], wire[end + 4 :])
    lines = body.split(CRLF)[:-1]  # body ends with CRLF, so the last piece is empty
    return head + b"".join(line + CRLF for line in lines[:count])


def _valid_text(body: bytes) -> str | None:
    """The line as text, or None for NUL, control bytes or invalid UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ch < " " and ch != "\t") or ch == "\x7f" for ch in text):
        return None
    return text


def _number(arg: str) -> int | None:
    return int(arg) if arg.isascii() and arg.isdigit() else None


def _plain_detail(response: str) -> dict[str, str]:
    decoded = sasl.shown(response)
    if decoded is None:
        return {"masked": "AUTH PLAIN ****"}
    return {"decoded": decoded, "masked": "AUTH PLAIN ****"}


def new_banner_id(hostname: str) -> str:
    """RFC 1939 §7 APOP timestamp: unique per greeting, msg-id syntax."""
    return f"<{os.getpid()}.{time.time_ns()}.{secrets.token_hex(4)}@{hostname}>"


# -- the connection state machine -------------------------------------------------

Handler = Callable[["POP3Connection", str], _Outcome]


class POP3Connection:
    """One POP3 session, server side. Feed it bytes; send what it answers."""

    def __init__(
        self,
        backend: POP3Backend,
        *,
        hostname: str = "localhost",
        tls_active: bool = False,
        tls_available: bool = True,
        cleartext_login: bool = False,
        banner_id: str | None = None,
        defer_io: bool = False,
    ) -> None:
        self.backend = backend
        # True (the TCP adapter): the maildrop is opened, read and updated through
        # StorageRequests the adapter answers off the event loop (storage_done); False
        # (in-memory backends: tests, predict mode): the core calls the backend itself.
        self.defer_io = defer_io
        self._request: StorageRequest | None = None
        self._then: Callable[[object, BaseException | None], _Outcome] | None = None
        self._finish: Callable[[_Outcome], Exchange] | None = None
        self.hostname = hostname
        self.tls_active = tls_active
        self.tls_available = tls_available
        # RFC 2595 §2.3: no clear-text password unless TLS is on, except where the
        # server is configured for it (the POP before SMTP scenario).
        self.cleartext_login = cleartext_login
        self.stls_done = False  # TLS came from STLS (so CAPA is asked again, §4)
        self.maildrop: str | None = None  # set once logged in: whose maildrop we hold
        self.banner_id = banner_id or new_banner_id(hostname)
        self.state = State.AUTHORIZATION
        self.user: str | None = None  # after USER: the name given; after login: the owner
        self.failed_logins = 0
        self._messages: list[_Message] = []
        self._buffer = bytearray()
        self._overflow: tuple[bytes, int] | None = None  # (shown prefix, octets so far)
        self._auth_pending = False  # an AUTH '+ ' continuation awaits the client's answer
        self._awaiting_tls = False

    # -- public API ------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def greeting(self) -> Pop3Reply:
        text = f"+OK MailFlow Lab POP3 ready {self.banner_id}\r\n"
        return Pop3Reply(text.encode(), "pop3.greeting")

    def receive_data(self, data: bytes) -> list[Exchange | StorageRequest]:
        """Frame `data` into lines and answer each complete one, in order. A command
        that needs the maildrop ends the list with its StorageRequest; the lines after
        it wait until the adapter calls `storage_done`."""
        if self.closed or self._awaiting_tls:
            return []
        self._buffer += data
        out: list[Exchange | StorageRequest] = []
        while not self.closed and not self._awaiting_tls and self._request is None:
            exchange = self._next_exchange()
            if exchange is None:
                break
            out.append(exchange)
        if self._request is not None:
            out.append(self._request)
            return out
        if self._awaiting_tls:
            # RFC 2595 §4 / CVE-2011-0411: plaintext pipelined after STLS must not
            # be executed inside the TLS session.
            self._buffer.clear()
        return out

    def storage_done(
        self, value: object = None, error: BaseException | None = None
    ) -> list[Exchange | StorageRequest]:
        """The adapter's answer to the pending StorageRequest: its result, or the
        exception it raised. Storage errors become -ERR; any other exception is a bug
        and is raised again here, for the adapter's error policy."""
        then, finish = self._then, self._finish
        if then is None or finish is None:
            return []
        self._request = self._then = self._finish = None
        exchange = finish(then(value, error))
        return [exchange, *self.receive_data(b"")]

    def receive_line(self, line: bytes) -> Exchange:
        """Answer one complete line (with or without its line ending); only for a
        connection that calls its backend itself (defer_io=False)."""
        exchange = self._receive_line(line)
        assert exchange is not None, "receive_line with defer_io: use receive_data"
        return exchange

    def _receive_line(self, line: bytes) -> Exchange | None:
        if len(line) > self._line_limit():
            return self._too_long(line[:SHOWN_OVERLONG], len(line))
        if self._auth_pending:
            return self._auth_response(line)
        return self._command(line)

    def tls_started(self) -> None:
        """The adapter finished the STLS handshake: forget what the client said before."""
        self._awaiting_tls = False
        self.tls_active = True
        self.stls_done = True
        self.user = None

    def connection_lost(self) -> None:
        """The client vanished: RFC 1939 §6 - no UPDATE state, nothing is removed."""
        self.state = State.CLOSED
        self._messages = []

    def timeout(self) -> Pop3Reply:
        self.connection_lost()
        return timeout_reply()

    # -- framing ---------------------------------------------------------------
    def _line_limit(self) -> int:
        return MAX_AUTH_LINE if self._auth_pending else MAX_LINE

    def _next_exchange(self) -> Exchange | None:
        """The answer to the next complete line; None when there is none yet, or when
        the command waits for the adapter (self._request is then set)."""
        end = self._buffer.find(b"\n")
        if end < 0:
            self._absorb_overflow()
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if self._overflow is not None:
            prefix, count = self._overflow
            self._overflow = None
            return self._too_long(prefix, count + len(line))
        return self._receive_line(line)

    def _absorb_overflow(self) -> None:
        # No line end yet. Once the partial line can no longer fit, keep only a
        # prefix for display and count the rest, so memory stays bounded.
        if self._overflow is None and len(self._buffer) < self._line_limit():
            return
        prefix, count = self._overflow or (bytes(self._buffer[:SHOWN_OVERLONG]), 0)
        self._overflow = (prefix, count + len(self._buffer))
        self._buffer.clear()

    def _too_long(self, prefix: bytes, octets: int) -> Exchange:
        self._auth_pending = False
        detail = {"octets": str(octets), "shown": f"first {len(_strip_eol(prefix))} octets"}
        return Exchange(
            ClientLine(prefix, TOOLONG_KEY, detail),
            Pop3Reply(b"-ERR line too long\r\n", TOOLONG_KEY + ".err"),
        )

    # -- commands --------------------------------------------------------------
    def _command(self, line: bytes) -> Exchange | None:
        body = _strip_eol(line)
        verb_raw, _, arg_raw = body.partition(b" ")
        verb = verb_raw.decode("ascii", "replace").upper()
        name = verb if verb in COMMANDS else "UNKNOWN"
        key = f"pop3.{name.lower()}"
        text = _valid_text(body)
        if text is None:
            outcome = _err("command contains NUL, control or non-UTF-8 bytes")
        else:
            arg = text.partition(" ")[2]
            outcome = self._dispatch(name, verb, arg)
        if name == "CAPA" and self.stls_done:
            key = "pop3.capa.again"  # RFC 2595 §4: the list asked again inside TLS
        command = ClientLine(line, key, self._detail(name, arg_raw))

        def finish(outcome: _Outcome) -> Exchange:
            reply_key = CONTINUATION_KEY if outcome.continuation else f"{key}.{_verdict(outcome)}"
            return self._exchange(command, outcome.key or reply_key, outcome)

        return self._suspend(finish) if outcome is _SUSPENDED else finish(outcome)

    def _suspend(self, finish: Callable[[_Outcome], Exchange]) -> None:
        self._finish = finish
        return None

    def _dispatch(self, name: str, verb: str, arg: str) -> _Outcome:
        if self.closed:
            return _err("session is over")
        if name == "UNKNOWN":
            shown = verb[:20] if verb.isprintable() else "?"
            return _err(f"unknown command {shown!r}" if verb else "empty command")
        if self.state is State.TRANSACTION and name in AUTH_ONLY:
            return _err(f"{name} is only valid before login")
        if self.state is State.AUTHORIZATION and name in TRANSACTION_ONLY:
            return _err(f"{name} is only valid after login")
        if name in CLEARTEXT_LOGIN and not self.password_allowed:
            # RFC 1939 §7 lets a server refuse plaintext passwords; [AUTH] is RFC 3206 §5.
            outcome = _err("[AUTH] no password before TLS: send STLS first (or use port 995)")
            outcome.key = NEEDS_TLS_KEY
            return outcome
        return _HANDLERS[name](self, arg)

    @property
    def password_allowed(self) -> bool:
        """May a password travel now? Inside TLS, or on a server set up for clear text."""
        return self.tls_active or self.cleartext_login

    def _detail(self, name: str, arg_raw: bytes) -> dict[str, str]:
        # Passwords travel in the clear on the wire; the UI can choose the masked form.
        if name == "PASS":
            return {"masked": "PASS ****"}
        if name == "APOP":
            user = arg_raw.partition(b" ")[0].decode("utf-8", "replace")
            return {"masked": f"APOP {user} ****"}
        if name == "AUTH":
            mech, _, initial = arg_raw.decode("utf-8", "replace").partition(" ")
            if mech.upper() == "PLAIN" and initial:
                return _plain_detail(initial.strip())
        return {}

    def _exchange(self, command: ClientLine, reply_key: str, outcome: _Outcome) -> Exchange:
        if outcome.action is Action.CLOSE:
            self.state = State.CLOSED
        elif outcome.action is Action.START_TLS:
            self._awaiting_tls = True
        return Exchange(
            command,
            Pop3Reply(outcome.data, reply_key),
            outcome.action,
            outcome.removed,
            outcome.login_failed,
            outcome.updated,
        )

    # -- AUTHORIZATION ----------------------------------------------------------
    def _capa(self, arg: str) -> _Outcome:
        if arg.strip():
            return _err("CAPA takes no arguments")
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.password_allowed:
                caps += ["USER", "SASL PLAIN"]
            if self.tls_available and not self.tls_active:
                caps.append("STLS")
        caps.append("IMPLEMENTATION MailFlow-Lab")
        return _multiline("Capability list follows", _lines(caps))

    def _user(self, arg: str) -> _Outcome:
        name = arg.strip()
        if not name or " " in name:
            return _err("USER needs exactly one name")
        self.user = name
        return _ok(f"{name} - now send PASS")

    def _pass(self, arg: str) -> _Outcome:
        if self.user is None:
            return _err("send USER first")
        if not arg:
            return _err("PASS needs a password")
        # The password is everything after 'PASS ', spaces included (RFC 1939 §7).
        if not self._authenticate(self.user, arg):
            return self._failed_login()
        return self._login(self.user)

    def _apop(self, arg: str) -> _Outcome:
        parts = arg.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{32}", parts[1]):
            return _err("APOP needs a name and a 32-digit hex MD5 digest")
        name, digest = parts
        secret = self._safe(lambda: self.backend.apop_secret(name))
        expected = hashlib.md5(f"{self.banner_id}{secret or ''}".encode()).hexdigest()
        # compare_digest always runs, so unknown users cost the same time.
        matches = hmac.compare_digest(digest.lower(), expected)
        if not (isinstance(secret, str) and matches):
            return self._failed_login()
        return self._login(name)

    def _auth(self, arg: str) -> _Outcome:
        mech, _, initial = arg.strip().partition(" ")
        if not mech:
            return _err("AUTH needs a mechanism; this server offers PLAIN")
        if mech.upper() != "PLAIN":
            return _err(f"unsupported mechanism {mech[:20]!r}; this server offers PLAIN")
        if not initial:
            self._auth_pending = True
            return _Outcome(b"+ \r\n", continuation=True)  # RFC 5034: empty challenge
        return self._plain(initial.strip())

    def _auth_response(self, line: bytes) -> Exchange | None:
        self._auth_pending = False
        body = _strip_eol(line)
        text = _valid_text(body)
        detail = _plain_detail(text.strip()) if text is not None else {}
        if text is None:
            outcome = _err("AUTH response is not valid base64")
        elif text.strip() == "*":
            detail = {}
            outcome = _err("authentication cancelled")  # RFC 5034 §4
        else:
            outcome = self._plain(text.strip())
        command = ClientLine(line, "pop3.auth.response", detail)

        def finish(outcome: _Outcome) -> Exchange:
            return self._exchange(command, f"pop3.auth.{_verdict(outcome)}", outcome)

        return self._suspend(finish) if outcome is _SUSPENDED else finish(outcome)

    def _plain(self, response: str) -> _Outcome:
        decoded = sasl.decode_plain(response)
        if decoded is None:
            return _err("AUTH PLAIN response is not base64 of authzid NUL user NUL password")
        authzid, user, password = decoded
        if authzid and authzid != user:
            return self._failed_login("[AUTH] acting as another user is not allowed")
        if not user or not self._authenticate(user, password):
            return self._failed_login()
        return self._login(user)

    def _stls(self, arg: str) -> _Outcome:
        if arg.strip():
            return _err("STLS takes no arguments")
        if self.tls_active:
            return _err("already using TLS")
        if not self.tls_available:
            return _err("TLS is not available here")
        return _Outcome(b"+OK begin TLS negotiation\r\n", Action.START_TLS)

    def _authenticate(self, user: str, password: str) -> bool:
        return self._safe(lambda: self.backend.authenticate(user, password)) is True

    def _failed_login(self, reason: str = "[AUTH] invalid user name or password") -> _Outcome:
        self.user = None
        self.failed_logins += 1
        if self.failed_logins >= MAX_FAILED_LOGINS:
            outcome = _err("[AUTH] too many failed logins, closing connection")
            outcome.action = Action.CLOSE
        else:
            outcome = _err(reason)
        outcome.login_failed = True
        return outcome

    def _login(self, user: str) -> _Outcome:
        return self._io(OpenMaildrop(user), lambda value, error: self._opened(user, value, error))

    def _opened(self, user: str, infos: object, error: BaseException | None) -> _Outcome:
        if isinstance(error, MaildropInUse):
            # RFC 2449 §8.1.2: the password was right, but another session holds the lock.
            self.user = None
            outcome = _err("[IN-USE] maildrop is locked by another session, try again later")
            outcome.key = IN_USE_KEY
            return outcome
        if isinstance(error, (OSError, KeyError)):  # the maildrop cannot be read now
            self.user = None
            return _err("[SYS/TEMP] cannot open the maildrop, try again later")
        if error is not None:
            raise error  # a bug: the adapter's error policy deals with it
        assert isinstance(infos, list)
        self.user = user
        self.maildrop = user
        self._messages = [_Message(n, info.key, info.size) for n, info in enumerate(infos, 1)]
        self.state = State.TRANSACTION
        count, size = self._totals()
        return _ok(f"{user} has {count} messages ({size} octets)")

    def _io(
        self,
        request: StorageRequest,
        then: Callable[[object, BaseException | None], _Outcome],
    ) -> _Outcome:
        """Ask storage for something: at once (in-memory backend), or by handing the
        adapter `request` and going on in `storage_done`."""
        if self.defer_io:
            self._request, self._then = request, then
            return _SUSPENDED
        try:
            value = perform(self.backend, request)
        except Exception as exc:  # sorted out by `then`: -ERR or raised again
            return then(None, exc)
        return then(value, None)

    # -- TRANSACTION ------------------------------------------------------------
    def _stat(self, arg: str) -> _Outcome:
        if arg.strip():
            return _err("STAT takes no arguments")
        count, size = self._totals()
        return _ok(f"{count} {size}")

    def _list(self, arg: str) -> _Outcome:
        return self._scan_listing(arg, "LIST", lambda m: str(m.size))

    def _uidl(self, arg: str) -> _Outcome:
        return self._scan_listing(arg, "UIDL", lambda m: uidl_of(m.key))

    def _scan_listing(self, arg: str, verb: str, value: Callable[[_Message], str]) -> _Outcome:
        args = arg.split()
        if len(args) > 1:
            return _err(f"{verb} takes at most one message number")
        if args:
            found = self._find(args[0])
            return _err(found) if isinstance(found, str) else _ok(f"{found.number} {value(found)}")
        live = [m for m in self._messages if not m.deleted]
        count, size = self._totals()
        first = f"{count} messages ({size} octets)" if verb == "LIST" else "unique-id listing"
        return _multiline(first, _lines([f"{m.number} {value(m)}" for m in live]))

    def _retr(self, arg: str) -> _Outcome:
        args = arg.split()
        if len(args) != 1:
            return _err("RETR needs exactly one message number")
        return self._send_message(args[0], None)

    def _top(self, arg: str) -> _Outcome:
        args = arg.split()
        if len(args) != 2:
            return _err("TOP needs a message number and a line count")
        lines = _number(args[1])
        if lines is None:
            return _err("line count must be a non-negative integer")
        return self._send_message(args[0], lines)

    def _send_message(self, number: str, top: int | None) -> _Outcome:
        found = self._find(number)
        if isinstance(found, str):
            return _err(found)
        number = found.number

        def then(data: object, error: BaseException | None) -> _Outcome:
            if isinstance(error, (OSError, KeyError)):
                return _err(f"[SYS/TEMP] message {number} is no longer available")
            if error is not None:
                raise error
            assert isinstance(data, bytes)
            wire = to_wire(data)
            if top is None:
                return _multiline(f"{len(wire)} octets", wire)
            return _multiline("top of message follows", _split_top(wire, top))

        return self._io(ReadMessage(self.user or "", found.key), then)

    def _dele(self, arg: str) -> _Outcome:
        args = arg.split()
        if len(args) != 1:
            return _err("DELE needs exactly one message number")
        found = self._find(args[0])
        if isinstance(found, str):
            return _err(found)
        # Only a mark: the file goes away in the UPDATE state, after QUIT.
        found.deleted = True
        return _ok(f"message {found.number} marked for deletion")

    def _noop(self, arg: str) -> _Outcome:
        return _err("NOOP takes no arguments") if arg.strip() else _ok("")

    def _rset(self, arg: str) -> _Outcome:
        if arg.strip():
            return _err("RSET takes no arguments")
        for message in self._messages:
            message.deleted = False
        count, size = self._totals()
        return _ok(f"maildrop has {count} messages ({size} octets)")

    def _quit(self, arg: str) -> _Outcome:
        if self.state is not State.TRANSACTION:
            return _Outcome(b"+OK MailFlow Lab POP3 signing off\r\n", Action.CLOSE)
        self.state = State.UPDATE
        keys = tuple(m.key for m in self._messages if m.deleted)
        left = len(self._messages) - len(keys)

        def then(removed: object, error: BaseException | None) -> _Outcome:
            if isinstance(error, (OSError, KeyError)):
                outcome = _err("[SYS/TEMP] some deleted messages were not removed")
                outcome.action, outcome.updated = Action.CLOSE, True
                return outcome
            if error is not None:
                raise error
            assert isinstance(removed, list)
            text = f"+OK signing off ({len(removed)} messages removed, {left} left)\r\n"
            return _Outcome(text.encode(), Action.CLOSE, tuple(removed), updated=True)

        if not keys:
            return then([], None)
        return self._io(RemoveMessages(self.user or "", keys), then)

    # -- helpers ----------------------------------------------------------------
    def _totals(self) -> tuple[int, int]:
        live = [m for m in self._messages if not m.deleted]
        return len(live), sum(m.size for m in live)

    def _find(self, arg: str) -> _Message | str:
        """The live message numbered `arg`, or the reason why there is none."""
        number = _number(arg)
        if number is None:
            return "message number must be a positive integer"
        if not 1 <= number <= len(self._messages):
            return f"no such message, only {len(self._messages)} in maildrop"
        message = self._messages[number - 1]
        if message.deleted:
            return f"message {number} already deleted"
        return message

    @staticmethod
    def _safe(call: Callable[[], T]) -> T | None:
        # A failing disk (full, file vanished) becomes -ERR. Anything else is a bug and
        # goes up to the adapter, which logs it and closes (app.engines.base.report_bug).
        try:
            return call()
        except (OSError, KeyError):
            return None


def perform(backend: POP3Backend, request: StorageRequest) -> object:
    """Carry out a storage request on a backend (what an adapter does off the loop)."""
    if isinstance(request, OpenMaildrop):
        return backend.open(request.user)
    if isinstance(request, ReadMessage):
        return backend.read(request.user, request.key)
    return backend.delete(request.user, list(request.keys))


_SUSPENDED = _Outcome(b"")  # a handler's answer while the adapter does its storage request


def _verdict(outcome: _Outcome) -> str:
    return "ok" if outcome.ok else "err"


_HANDLERS: dict[str, Handler] = {
    "CAPA": POP3Connection._capa,
    "USER": POP3Connection._user,
    "PASS": POP3Connection._pass,
    "APOP": POP3Connection._apop,
    "AUTH": POP3Connection._auth,
    "STLS": POP3Connection._stls,
    "STAT": POP3Connection._stat,
    "LIST": POP3Connection._list,
    "RETR": POP3Connection._retr,
    "DELE": POP3Connection._dele,
    "NOOP": POP3Connection._noop,
    "RSET": POP3Connection._rset,
    "TOP": POP3Connection._top,
    "UIDL": POP3Connection._uidl,
    "QUIT": POP3Connection._quit,
}

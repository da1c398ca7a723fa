"""SMTP / LMTP command order, sans-IO: which command may come next, and what the
server says when it may not.

Our SMTP and LMTP servers are aiosmtpd, which cannot be driven without a socket.
Predict mode needs to ask "what would the server answer to this line, here?"
many times per page, so this core re-implements aiosmtpd's ordering and syntax
checks (greeting → EHLO/HELO → [STARTTLS → EHLO] → [AUTH] → MAIL → RCPT+ → DATA)
with the same reply texts. tests/test_smtp_order.py checks its verdicts against
the real servers. Policy questions (does this mailbox exist, may this host relay)
are not order: the core accepts them, and `replay` lets the recorded reply win.
"""

from __future__ import annotations

import base64
import binascii
import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from enum import Enum

from app.digits import is_digits
from app.protocols.smtp_replies import (
    BARE_EOL_REPLY,
    ESC_KEYWORD,
    MAX_RECIPIENTS,
    TOO_MANY_RECIPIENTS,
    enhance,
)

COMMAND_LIMIT = 512  # RFC 5321 §4.5.3.1.4, aiosmtpd's command_size_limit
MAIL_LIMIT = 512 + 26  # aiosmtpd allows SIZE=... on MAIL once EHLO announced it
ALLOWED_LOGIN = ("PLAIN", "LOGIN")
MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # as app/engines/smtp_server.py


class Phase(Enum):
    COMMAND = "command"
    AUTH_PLAIN = "auth-plain"  # after "334 ": the client sends base64 credentials
    AUTH_USER = "auth-user"  # AUTH LOGIN, asked for the user name
    AUTH_PASS = "auth-pass"  # AUTH LOGIN, asked for the password
    DATA = "data"  # after 354: message content until "."
    TLS = "tls"  # after 220 to STARTTLS: the handshake comes next
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Role:
    """What kind of server answers: derived from the endpoint (587, 465, 25, LMTP)."""

    hostname: str = "localhost"
    lmtp: bool = False
    starttls: bool = True  # STARTTLS offered (aiosmtpd has a tls_context)
    implicit_tls: bool = False  # the whole session is TLS (465)
    auth_mechanisms: tuple[str, ...] = ALLOWED_LOGIN  # empty: AUTH not offered (MX, LMTP)
    auth_required: bool = False  # MAIL/RCPT/DATA need AUTH first (submission)
    auth_requires_tls: bool = True


SUBMISSION = Role("mail.a.example", auth_required=True)
SUBMISSIONS = Role("mail.a.example", starttls=False, implicit_tls=True, auth_required=True)
MX = Role("mx.b.example", auth_mechanisms=())
LMTP = Role("mda.b.example", lmtp=True, starttls=False, auth_mechanisms=())


@dataclass(frozen=True, slots=True)
class OrderReply:
    code: int
    text: str  # the whole reply, lines joined with "\n" (as events show them)

    @property
    def ok(self) -> bool:
        """2xx and 3xx: the server went along with the command."""
        return self.code < 400


Authenticator = Callable[[str, str], bool]


def _reply(text: str) -> OrderReply:
    return OrderReply(int(text[:3]), text)


def _queue_id() -> str:
    # The form app/world/spool.py gives its ids; the real one is known only afterwards.
    return secrets.token_hex(5).upper()


@dataclass
class _Session:
    helo: str | None = None
    extended: bool = False
    tls: bool = False
    authenticated: bool = False
    mail_from: str | None = None
    rcpts: list[str] = field(default_factory=list)
    phase: Phase = Phase.COMMAND
    login_user: str = ""


class SmtpOrder:
    """One SMTP/LMTP session, server side, reduced to command order and syntax."""

    def __init__(self, role: Role = SUBMISSION, authenticator: Authenticator | None = None):
        self.role = role
        self.authenticator = authenticator
        self.s = _Session(tls=role.implicit_tls)

    # -- public API ------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self.s.phase

    def greeting(self) -> OrderReply:
        return _reply(f"220 {self.role.hostname} MailFlow Lab")

    def command(self, line: str) -> OrderReply:
        """The reply to one client line (no line ending). Never raises on input.

        Replies go through the same table as the servers' (app/protocols/smtp_replies.py):
        aiosmtpd's bare codes get their RFC 3463 enhanced code."""
        phase = self.s.phase
        if phase is Phase.CLOSED:
            return _reply("421 4.3.0 Connection closed")  # nothing would answer at all
        if phase is Phase.DATA:
            return self._data_line(line)
        if phase in (Phase.AUTH_PLAIN, Phase.AUTH_USER, Phase.AUTH_PASS):
            return self._auth_line(line)  # aiosmtpd's SASL replies carry their codes
        verb = line.split(" ", 1)[0].strip().upper() or "?"  # as the tap's CommandLineReader
        if "\r" in line or "\n" in line:
            # A CR or LF inside: the servers refuse the line whole (RFC 5321 §2.3.8).
            return _reply(BARE_EOL_REPLY)
        if phase is Phase.TLS:
            reply = _reply("554 Command refused due to lack of security")
        else:
            reply = self._command(line)
        text = "\n".join(enhance(verb, part) for part in reply.text.split("\n"))
        return reply if text == reply.text else _reply(text)

    def replay(self, line: str, recorded_code: int | None) -> OrderReply:
        """Feed a recorded client line; when the real server refused what order allows
        (a policy said no: unknown mailbox, relay denied), keep the real outcome."""
        before = copy.deepcopy(self.s)
        reply = self.command(line)
        if recorded_code is not None and recorded_code >= 400 and reply.ok:
            self.s = before
            if recorded_code == 421 or line.strip().upper() == "QUIT":
                self.s.phase = Phase.CLOSED
        elif recorded_code == 235 and self.s.phase is Phase.COMMAND:
            self.s.authenticated = True  # the real server knew a password we do not
        return reply

    def tls_started(self) -> None:
        """The STARTTLS handshake is done: the session starts over (RFC 3207 §4.2)."""
        self.s = _Session(tls=True)

    def end_data(self) -> list[OrderReply]:
        """The client sent the final "."; aiosmtpd clears the transaction either way.
        Returns what the lab's servers answer: SMTP once, LMTP once per accepted
        recipient in RCPT order (RFC 2033 §4.2). The queue ids are the core's own."""
        if self.s.phase is not Phase.DATA:
            return []
        rcpts = self.s.rcpts
        self.s.phase = Phase.COMMAND
        self.s.mail_from, self.s.rcpts = None, []
        if self.role.lmtp:
            return [_reply(f"250 2.0.0 <{r}> {_queue_id()} Saved") for r in rcpts]
        return [_reply(f"250 2.0.0 Ok: queued as {_queue_id()}")]

    # -- commands --------------------------------------------------------------
    def _command(self, line: str) -> OrderReply:
        if not line.strip(" \t"):
            return _reply("500 Error: bad syntax")
        verb_raw, _, arg_raw = line.partition(" ")
        if not verb_raw.isascii():
            return _reply("500 Error: bad syntax")
        verb = verb_raw.upper()
        arg = arg_raw.strip() or None
        if arg is not None and not arg.isascii():
            return _reply("500 Error: strict ASCII mode")  # SMTPUTF8 is not enabled
        limit = MAIL_LIMIT if verb == "MAIL" and self.s.extended else COMMAND_LIMIT
        if len(line.encode()) > limit:
            return _reply("500 Command line too long")
        handler = _HANDLERS.get(verb)
        if handler is None or (verb in ("HELO", "EHLO") and self.role.lmtp):
            return _reply(f'500 Error: command "{verb}" not recognized')
        if verb == "LHLO" and not self.role.lmtp:
            return _reply('500 Error: command "LHLO" not recognized')
        return handler(self, arg)

    def _needs_helo(self, name: str = "HELO") -> OrderReply | None:
        if self.s.helo is None:
            return _reply(f"503 Error: send {name} first")  # aiosmtpd says HELO even for LMTP
        return None

    def _needs_auth(self) -> OrderReply | None:
        if self.role.auth_required and not self.s.authenticated:
            return _reply("530 5.7.0 Authentication required")
        return None

    def _helo(self, arg: str | None) -> OrderReply:
        if not arg:
            return _reply("501 Syntax: HELO hostname")
        self._greeted(arg, extended=False)
        return _reply(f"250 {self.role.hostname}")

    def _ehlo(self, arg: str | None) -> OrderReply:
        if not arg:
            return _reply("501 Syntax: EHLO hostname")  # aiosmtpd's LHLO is its EHLO
        self._greeted(arg, extended=True)
        lines = [self.role.hostname, "SIZE 10485760", "8BITMIME"]
        if self.role.starttls and not self.s.tls:
            lines.append("STARTTLS")
        if self.role.auth_mechanisms and (self.s.tls or not self.role.auth_requires_tls):
            lines.append("AUTH " + " ".join(sorted(self.role.auth_mechanisms)))
        lines += [ESC_KEYWORD, "HELP"]  # the tap adds ENHANCEDSTATUSCODES before the last
        return OrderReply(
            250,
            "\n".join(
                f"250{'-' if i < len(lines) - 1 else ' '}{text}" for i, text in enumerate(lines)
            ),
        )

    def _greeted(self, name: str, *, extended: bool) -> None:
        # HELO/EHLO reset the transaction (RFC 5321 §4.1.4); AUTH and TLS stay.
        self.s.helo, self.s.extended = name, extended
        self.s.mail_from, self.s.rcpts = None, []

    def _starttls(self, arg: str | None) -> OrderReply:
        if arg:
            return _reply("501 Syntax: STARTTLS")
        if not self.role.starttls:
            return _reply("454 TLS not available")
        if self.s.tls:
            # RFC 3207 §4: no TLS inside TLS. aiosmtpd would accept and nest a second
            # handshake; our server refuses (app/engines/smtp_tap.py), and so does the core.
            return _reply("554 5.5.1 Error: TLS already active")
        self.s.phase = Phase.TLS
        return _reply("220 Ready to start TLS")

    def _auth(self, arg: str | None) -> OrderReply:
        if (refused := self._needs_helo("EHLO")) is not None:
            return refused
        if not self.s.extended:
            return _reply("500 Error: command 'AUTH' not recognized")
        if self.role.auth_requires_tls and not self.s.tls:
            return _reply("538 5.7.11 Encryption required for requested authentication mechanism")
        if self.s.authenticated:
            return _reply("503 Already authenticated")
        if not arg:
            return _reply("501 Not enough value")
        args = arg.split()
        if len(args) > 2:
            return _reply("501 Too many values")
        mechanism = args[0].upper()
        if mechanism not in self.role.auth_mechanisms:
            return _reply("504 5.5.4 Unrecognized authentication type")
        if mechanism == "PLAIN":
            if len(args) == 1:
                self.s.phase = Phase.AUTH_PLAIN
                return _reply("334 ")
            return self._plain(args[1])
        if len(args) == 2:  # LOGIN with the user name as initial response
            return self._login_user(args[1])
        self.s.phase = Phase.AUTH_USER
        return _reply("334 VXNlcm5hbWU6")  # "Username:"

    def _auth_line(self, line: str) -> OrderReply:
        phase, self.s.phase = self.s.phase, Phase.COMMAND
        if line.strip() == "*":
            return _reply("501 5.7.0 Auth aborted")
        if phase is Phase.AUTH_PLAIN:
            return self._plain(line.strip())
        if phase is Phase.AUTH_USER:
            return self._login_user(line.strip())
        password = _b64(line.strip())
        if password is None:
            return _reply("501 5.5.2 Can't decode base64")
        return self._check(self.s.login_user, password.decode("utf-8", "replace"))

    def _login_user(self, blob: str) -> OrderReply:
        user = _b64(blob)
        if user is None:
            return _reply("501 5.5.2 Can't decode base64")
        self.s.login_user = user.decode("utf-8", "replace")
        self.s.phase = Phase.AUTH_PASS
        return _reply("334 UGFzc3dvcmQ6")  # "Password:"

    def _plain(self, blob: str) -> OrderReply:
        raw = _b64(blob)
        if raw is None:
            return _reply("501 5.5.2 Can't decode base64")
        parts = raw.split(b"\0")
        if len(parts) != 3:
            return _reply("501 5.5.2 Can't split auth value")
        _authz, user, password = (p.decode("utf-8", "replace") for p in parts)
        return self._check(user, password)

    def _check(self, user: str, password: str) -> OrderReply:
        if self.authenticator is not None and not self.authenticator(user, password):
            return _reply("535 5.7.8 Authentication credentials invalid")
        self.s.authenticated = True
        return _reply("235 2.7.0 Authentication successful")

    def _mail(self, arg: str | None) -> OrderReply:
        if (refused := self._needs_helo() or self._needs_auth()) is not None:
            return refused
        syntax = "501 Syntax: MAIL FROM: <address>"
        if self.s.extended:
            syntax += " [SP <mail-parameters>]"
        address = _address(arg, "FROM:")
        if isinstance(address, OrderReply):
            return address if address.code != 501 else _reply(syntax)
        addr, params = address
        if not self.s.extended and params:
            return _reply(syntax)
        if self.s.mail_from is not None:
            return _reply("503 Error: nested MAIL command")
        options = _params(params)
        if options is None:
            return _reply(syntax)
        body = options.pop("BODY", "7BIT")
        if body not in ("7BIT", "8BITMIME"):
            return _reply("501 Error: BODY can only be one of 7BIT, 8BITMIME")
        utf8 = options.pop("SMTPUTF8", False)
        if not isinstance(utf8, bool):
            return _reply("501 Error: SMTPUTF8 takes no arguments")
        if utf8:
            return _reply("501 Error: SMTPUTF8 disabled")
        size = options.pop("SIZE", None)
        if size is not None and (isinstance(size, bool) or not is_digits(size)):
            return _reply(syntax)
        if size is not None and int(size) > MAX_MESSAGE_SIZE:
            return _reply("552 Error: message size exceeds fixed maximum message size")
        if options:
            return _reply("555 MAIL FROM parameters not recognized or not implemented")
        self.s.mail_from = addr
        return _reply("250 OK")

    def _rcpt(self, arg: str | None) -> OrderReply:
        if (refused := self._needs_helo() or self._needs_auth()) is not None:
            return refused
        if self.s.mail_from is None:
            return _reply("503 Error: need MAIL command")
        syntax = "501 Syntax: RCPT TO: <address>"
        if self.s.extended:
            syntax += " [SP <mail-parameters>]"
        address = _address(arg, "TO:")
        if isinstance(address, OrderReply):
            return address if address.code != 501 else _reply(syntax)
        addr, params = address
        if not self.s.extended and params:
            return _reply(syntax)
        options = _params(params)
        if options is None:
            return _reply(syntax)
        if options:
            return _reply("555 RCPT TO parameters not recognized or not implemented")
        if any(addr.casefold() == r.casefold() for r in self.s.rcpts):
            return _reply("250 2.1.5 Ok")  # accepted again, delivered once
        if len(self.s.rcpts) >= MAX_RECIPIENTS:
            return _reply(TOO_MANY_RECIPIENTS)
        self.s.rcpts.append(addr)
        return _reply("250 2.1.5 Ok")  # what the lab's policies say to a recipient they take

    def _data(self, arg: str | None) -> OrderReply:
        if (refused := self._needs_helo() or self._needs_auth()) is not None:
            return refused
        if not self.s.rcpts:
            return _reply("503 Error: need RCPT command")
        if arg:
            return _reply("501 Syntax: DATA")
        self.s.phase = Phase.DATA
        return _reply("354 End data with <CR><LF>.<CR><LF>")

    def _data_line(self, line: str) -> OrderReply:
        # Content is not a command; only its end gets a reply.
        if line == ".":
            replies = self.end_data()
            return _reply("\n".join(r.text for r in replies))
        return OrderReply(0, "")

    def _rset(self, arg: str | None) -> OrderReply:
        if arg:
            return _reply("501 Syntax: RSET")
        self.s.mail_from, self.s.rcpts = None, []
        return _reply("250 OK")

    def _noop(self, arg: str | None) -> OrderReply:
        return _reply("250 OK")

    def _quit(self, arg: str | None) -> OrderReply:
        if arg:
            return _reply("501 Syntax: QUIT")
        self.s.phase = Phase.CLOSED
        return _reply("221 Bye")

    def _vrfy(self, arg: str | None) -> OrderReply:
        if (refused := self._needs_auth()) is not None:
            return refused
        if not arg:
            return _reply("501 Syntax: VRFY <address>")
        if _parse_addr(arg) is None:
            return _reply(f"502 Could not VRFY {arg}")
        return _reply("252 Cannot VRFY user, but will accept message and attempt delivery")

    def _help(self, arg: str | None) -> OrderReply:
        if (refused := self._needs_auth()) is not None:
            return refused
        names = sorted(
            n
            for n in _HANDLERS
            if n != "EXPN"  # aiosmtpd has no syntax line for it, so HELP leaves it out
            and (n != "STARTTLS" or self.role.starttls)
            and (n != "AUTH" or self.role.auth_mechanisms)
            and (n not in ("HELO", "EHLO") if self.role.lmtp else n != "LHLO")
        )
        if arg and arg.upper() in names:
            return _reply(f"250 Syntax: {_SYNTAX[arg.upper()]}")
        code = 501 if arg else 250
        return _reply(f"{code} Supported commands: {' '.join(names)}")

    def _expn(self, arg: str | None) -> OrderReply:
        return _reply("502 EXPN not implemented")


def _b64(blob: str) -> bytes | None:
    if blob == "=":
        return b""
    try:
        return base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None


def _params(text: str) -> dict[str, str | bool] | None:
    """ESMTP parameters as aiosmtpd reads them (RFC 1869): KEY or KEY=VALUE, upper-cased."""
    result: dict[str, str | bool] = {}
    for item in text.upper().split():
        key, eq, value = item.partition("=")
        if not key.isalnum() or (eq and not value):
            return None
        result[key] = value if eq else True
    return result


def _parse_addr(arg: str) -> tuple[str, str] | None:
    """aiosmtpd's address parsing: (address, the rest) or None when it cannot parse."""
    try:
        if arg.lstrip().startswith("<"):
            token, rest = get_angle_addr(arg)
        else:
            token, rest = get_addr_spec(arg)
    except (HeaderParseError, IndexError):
        return None
    return token.addr_spec or "", str(rest)


def _address(arg: str | None, keyword: str) -> tuple[str, str] | OrderReply:
    if arg is None or arg[: len(keyword)].upper() != keyword:
        return _reply("501 Syntax")
    rest = arg[len(keyword) :].strip()
    if not rest:
        return _reply("501 Syntax")
    parsed = _parse_addr(rest)
    if parsed is None:
        return _reply("553 5.1.3 Error: malformed address")
    addr, params = parsed
    if not addr:
        return _reply("501 Syntax")
    return addr, params.strip()


_HANDLERS: dict[str, Callable[[SmtpOrder, str | None], OrderReply]] = {
    "HELO": SmtpOrder._helo,
    "EHLO": SmtpOrder._ehlo,
    "LHLO": SmtpOrder._ehlo,
    "STARTTLS": SmtpOrder._starttls,
    "AUTH": SmtpOrder._auth,
    "MAIL": SmtpOrder._mail,
    "RCPT": SmtpOrder._rcpt,
    "DATA": SmtpOrder._data,
    "RSET": SmtpOrder._rset,
    "NOOP": SmtpOrder._noop,
    "QUIT": SmtpOrder._quit,
    "VRFY": SmtpOrder._vrfy,
    "HELP": SmtpOrder._help,
    "EXPN": SmtpOrder._expn,
}
_SYNTAX = {
    "HELO": "HELO hostname",
    "EHLO": "EHLO hostname",
    "LHLO": "LHLO hostname",
    "STARTTLS": "STARTTLS",
    "AUTH": "AUTH <mechanism>",
    "MAIL": "MAIL FROM: <address>",
    "RCPT": "RCPT TO: <address>",
    "DATA": "DATA",
    "RSET": "RSET",
    "NOOP": "NOOP [ignored]",
    "QUIT": "QUIT",
    "VRFY": "VRFY <address>",
    "HELP": "HELP [command]",
    "EXPN": "EXPN <address>",
}

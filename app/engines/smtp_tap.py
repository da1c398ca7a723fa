"""aiosmtpd's SMTP and LMTP servers with a wire tap.

The tap sits where aiosmtpd meets the transport: `data_received` sees every byte
the client sent (already decrypted after STARTTLS, because the event loop's TLS layer
hands plain text to this protocol) and `push` sees every reply line. It groups
them the way a learner reads them: one event per client line, one per complete
(possibly multi-line) reply, and the DATA content as one block.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import re
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, _DataState, syntax

from app.engines.base import Endpoint
from app.engines.login_guard import LoginGuard
from app.engines.smtp_data import read_message
from app.engines.tls import describe_tls
from app.events import Sink, Tap, wire_text
from app.protocols.smtp_replies import (
    BARE_EOL_REPLY,
    ESC_KEYWORD,
    MAX_RECIPIENTS,
    TOO_MANY_RECIPIENTS,
    enhance,
    has_bare_eol,
)

MAX_SHOWN_LINE = 2048  # longer lines are shown cut; the engine still judges the whole line
DATA_SHOWN_LIMIT = 64 * 1024  # a huge message is shown cut on screen, never in the mailbox
CLOSE_GRACE = 5.0  # seconds a closing connection may take to flush before it is cut
_NEVER_HELD = (b"221", b"334", b"354", b"421")

# "<dot-atom@dot-atom>" and optional parameters after one space: the addresses nearly
# every client sends. Everything else (quoted local parts, comments, <>, source
# routes, non-ASCII) still goes through aiosmtpd's full RFC 5322 parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_PATH = re.compile(rf"<({_DOT_ATOM})@({_DOT_ATOM})>(?: ([!-'*-~][ -~]*))?")


_PIPELINING = re.compile(r"^250[- ]PIPELINING$", re.MULTILINE | re.IGNORECASE)


def show_nul(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\0", "␀")


def decode_sasl(blob: str) -> str | None:
    try:
        return show_nul(base64.b64decode(blob.strip(), validate=True))
    except (binascii.Error, ValueError):
        return None


class WireTap:
    """Turns the raw SMTP/LMTP byte stream into learner-sized events."""

    def __init__(self, tap: Tap, prefix: str) -> None:
        self.tap = tap
        self.prefix = prefix  # "smtp" or "lmtp": the explanation key family
        self._inbuf = b""
        self._mode = "command"  # command | data | auth
        self._data: list[bytes] = []
        self._data_size = 0
        self._mid_line = False  # in DATA: the octets taken so far ended inside a line
        self._reply: list[str] = []
        # Replies come in the order of the commands (RFC 2920 §3.1), so with pipelining
        # the reply being shown answers the oldest command still waiting, not the last.
        self._awaiting: collections.deque[str] = collections.deque()
        self.last_verb = "greeting"
        self.last_code = 0
        self._auth_mech = ""
        self._next_reply_key: str | None = None

    def explain_next_reply(self, key: str) -> None:
        """A policy that knows why it answers as it does (a DMARC reject, say) names the
        explanation of its next reply; otherwise the key follows the command and code."""
        self._next_reply_key = key

    # -- client side -------------------------------------------------------
    def received(self, data: bytes) -> None:
        self._inbuf += data
        while True:
            if self._mode == "data":
                if not self._data_block():
                    return
                continue
            # The message content ends its lines with CRLF only, as aiosmtpd reads it: a
            # bare LF inside is not a line end, so "\n.\n" cannot end the message here
            # while the server goes on reading (the SMTP smuggling trick).
            sep = b"\r\n" if self._mode == "data" else b"\n"
            idx = self._inbuf.find(sep)
            if idx >= 0:
                idx += len(sep) - 1
            if idx < 0:
                if len(self._inbuf) > MAX_SHOWN_LINE * 4 and self._mode != "data":
                    # A client that never ends its line: show what came, keep memory bounded.
                    self._client_line(self._inbuf[:MAX_SHOWN_LINE] + b"...", awaits=False)
                    self._inbuf = b""
                return
            line, self._inbuf = self._inbuf[: idx + 1], self._inbuf[idx + 1 :]
            self._line(line)

    def _data_block(self) -> bool:
        """Take every complete message line that came, in one step (a 2 KB mail is ~40
        lines); False when no whole line is there yet. `_inbuf` starts at a line start
        here unless `_mid_line`, so "." + CRLF there, or after any CRLF, ends it."""
        buf = self._inbuf
        if buf[:3] == b".\r\n" and not self._mid_line:
            self._inbuf = buf[3:]
            self._line(b".\r\n")
            return True
        end = buf.find(b"\r\n.\r\n")
        cut = end + 2 if end >= 0 else buf.rfind(b"\r\n") + 2
        if cut < 2:
            if len(buf) <= MAX_SHOWN_LINE * 4:
                return False
            # A line that never ends (the server refuses it with 500 at the end): count
            # it and move on, so memory stays bounded; a last CR may start the CRLF.
            cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        block, self._inbuf = buf[:cut], buf[cut:]
        self._mid_line = not block.endswith(b"\r\n")
        size = self._data_size + len(block)
        if size <= DATA_SHOWN_LIMIT:
            self._data_size = size
            self._data.append(block)
        else:  # crossing the shown limit: line by line, as below
            *whole, rest = block.split(b"\r\n")
            for line in whole:
                self._line(line + b"\r\n")
            if rest:
                self._line(rest)
        return True

    def _line(self, line: bytes) -> None:
        if self._mode == "data":
            if line == b".\r\n":
                content = b"".join(self._data)
                shown = wire_text(content)
                detail = {}
                if self._data_size > DATA_SHOWN_LIMIT:
                    detail["cut"] = f"{self._data_size} octets; first {DATA_SHOWN_LIMIT} shown"
                self.tap.client(shown, f"{self.prefix}.data.content", detail)
                self.tap.client(".", f"{self.prefix}.data.end")
                self._data, self._data_size = [], 0
                self._mode = "command"
                self.last_verb = "data.end"
                self._awaiting.append("data.end")
            else:
                self._data_size += len(line)
                if self._data_size <= DATA_SHOWN_LIMIT:
                    self._data.append(line)
            return
        if len(line) > MAX_SHOWN_LINE:
            line = line[:MAX_SHOWN_LINE] + b"..."
        self._client_line(line, bare_eol=self._mode == "command" and has_bare_eol(line))

    def _client_line(self, line: bytes, *, awaits: bool = True, bare_eol: bool = False) -> None:
        # awaits=False: the shown start of a line that has not ended yet; its reply
        # will answer the rest.
        text = wire_text(line).rstrip("\r\n")
        if bare_eol:
            # The server refuses the whole line (501 5.5.2); a CR inside it is shown as
            # a visible sign, since a raw CR would overwrite the line on screen.
            text = text.replace("\r", "␍")
            self.last_verb = "bare_eol"
            self._awaiting.append("bare_eol")
            self.tap.client(text, f"{self.prefix}.bare_eol")
            return
        if self._mode == "auth":
            self._mode = "command"
            self._awaiting.append("auth")
            detail = {"masked": "****"}
            decoded = decode_sasl(text)
            if decoded is not None:
                detail["decoded"] = decoded
            self.tap.client(text, f"{self.prefix}.auth.response", detail)
            return
        verb = text.split(" ", 1)[0].upper() if text else ""
        key_verb = verb.lower() if verb.isalpha() and len(verb) <= 10 else "unknown"
        detail: dict[str, str] = {}
        if verb == "AUTH":
            parts = text.split()
            self._auth_mech = parts[1].upper() if len(parts) > 1 else ""
            if len(parts) > 2:
                detail["masked"] = f"{parts[0]} {parts[1]} ****"
                decoded = decode_sasl(parts[2])
                if decoded is not None:
                    detail["decoded"] = decoded
        self.last_verb = key_verb
        if awaits:
            self._awaiting.append(key_verb)
        self.tap.client(text, f"{self.prefix}.{key_verb}", detail)

    # -- server side -------------------------------------------------------
    def pushed(self, status: str) -> None:
        for line in status.split("\r\n"):
            self._reply.append(line)
            # "250-..." continues a reply; "250 ..." or a bare code ends it (RFC 5321 §4.2.1).
            if len(line) < 4 or line[3] != "-":
                self._flush_reply()

    def _flush_reply(self) -> None:
        text = "\n".join(self._reply)
        self._reply = []
        code = text[:3]
        # isdigit() alone admits "¹" and other Unicode digits that int() refuses.
        self.last_code = int(code) if code.isascii() and code.isdigit() else 0
        # A reply with no command waiting (the greeting, a timeout's 421, LMTP's second
        # and later answers to one DATA) belongs to the last one answered.
        verb = self._awaiting.popleft() if self._awaiting else self.last_verb
        self.last_verb = verb
        key = self._next_reply_key or f"{self.prefix}.{verb}.{code}"
        self._next_reply_key = None
        if verb in ("ehlo", "lhlo") and _PIPELINING.search(text):
            key += ".pipelining"  # explained only where the reply really offers it
        self.tap.server(text, key)
        if code == "354":
            self._mode = "data"
        elif code == "334":
            self._mode = "auth"
            self.last_verb = "auth"


class CommandLineReader(asyncio.StreamReader):
    """aiosmtpd's stream reader, refusing command lines with a bare CR or LF.

    aiosmtpd splits commands at LF alone and keeps a CR inside the argument, so
    "EHLO evil\rX-Injected: yes" reached the handlers whole and a bare-LF line passed as
    a command. Both are the stuff of header injection and SMTP smuggling, so every
    command line must end in CRLF and hold no other CR or LF (RFC 5321 §2.3.8). The
    command loop reads with readuntil(b"\n"); DATA reads with readuntil(b"\r\n") and
    SASL answers with readline(), both passed through unchanged. The reader also notes
    the verb of the command being answered, for the reply table in `push`.
    """

    refuse: Any = None  # async callable(reply) the protocol sets
    verb = ""  # the command now being answered; "" before the first (the greeting)
    _raw = False

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        while True:
            line = await super().readuntil(separator)
            if separator != b"\n" or self._raw:
                return line
            # "?" for a line with no verb: "" stands for the greeting in the table.
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
            self.verb = verb or "?"
            if not has_bare_eol(line) or self.refuse is None:
                return line
            await self.refuse(BARE_EOL_REPLY)

    async def readline(self) -> bytes:
        self._raw = True
        try:
            return await super().readline()
        finally:
            self._raw = False


# What aiosmtpd keeps of a finished handshake in `session.ssl` (its SSLProtocol's `_extra`).
_TLS_EXTRA = ("sslcontext", "peercert", "cipher", "compression", "ssl_object")


class _HandshakeDone:
    """Stands in for the SSLProtocol aiosmtpd's STARTTLS builds: aiosmtpd tests
    `_tls_protocol` for "TLS is on" and copies its `_extra` into `session.ssl`."""

    __slots__ = ("_extra",)

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._extra = {name: transport.get_extra_info(name) for name in _TLS_EXTRA}


class TappedMixin:
    """Shared by the SMTP and LMTP servers below; see the module docstring."""

    key_prefix = "smtp"
    endpoint: Endpoint
    sink: Sink
    wire: WireTap | None = None
    guard: LoginGuard | None = None  # the shared per-address back-off (login_guard.py)
    _login_failures = 0
    _acquired = False
    _idle_deadline = 0.0
    # While a STARTTLS handshake is on: what the TLS layer decrypted before smtp_STARTTLS
    # took over the new transport (None otherwise).
    _early: list[bytes] | None = None

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ runs inspect.getmembers(self) and dir(self) for every new
        # connection to find its smtp_* and auth_* methods: ~200 getattrs, most of the
        # cost of accepting a connection. They are the same for every instance of a
        # class, so dir() lists only them, found once per class.
        cls = type(self)
        names = cls.__dict__.get("_protocol_names")
        if names is None:
            names = [n for n in object.__dir__(self) if n.startswith(("smtp_", "auth_"))]
            cls._protocol_names = names  # type: ignore[attr-defined]
        return list(names)

    def _tap_init(self, endpoint: Endpoint, sink: Sink, guard: LoginGuard | None) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.guard = guard
        self._held: list[bytes] = []  # continuation lines of a reply not yet written

    def _checked_reader(self) -> None:
        # aiosmtpd builds its StreamReader inside __init__ with no way to pass another
        # class; CommandLineReader only adds methods, so the instance changes class.
        reader = self._stream_reader  # type: ignore[attr-defined]
        reader.__class__ = CommandLineReader
        reader.refuse = self.push

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.wire is None:
            if not self.endpoint.try_acquire():
                # Refuse before aiosmtpd starts a session: the listener is full.
                transport.write(b"421 4.7.0 Too many connections, try again later\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._acquired = True
            self.wire = WireTap(self.endpoint.new_tap(self.sink), self.key_prefix)
            if self.endpoint.implicit_tls:
                self._note_handshake(transport)
        else:
            # The second call comes from the finished STARTTLS handshake.
            self.wire.tap.tls = True
            self._note_handshake(transport)
        super().connection_made(transport)  # type: ignore[misc]

    def _note_handshake(self, transport: asyncio.BaseTransport) -> None:
        assert self.wire is not None
        desc = describe_tls(transport.get_extra_info("ssl_object"))
        self.wire.tap.note(desc, "tls.handshake", protocol="TLS")

    def connection_lost(self, error: Exception | None) -> None:
        if not self._acquired:
            return
        self._acquired = False
        self.endpoint.release()
        super().connection_lost(error)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._early is not None:
            # Decrypted, from a client that spoke right after its handshake: it waits
            # until the session has become the TLS one (smtp_STARTTLS below).
            self._early.append(data)
            return
        if self.wire is not None:
            self.wire.received(data)
        super().data_received(data)  # type: ignore[misc]

    async def push(self, status: Any) -> None:
        if self.wire is not None and self.guard is not None and status[:3] in ("535", b"535"):
            # A failed AUTH: the answer waits as long as this address's back-off says.
            peer = getattr(self.session, "peer", None)  # type: ignore[attr-defined]
            address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            await self.guard.hold(address, self.wire.tap)
        status = self._enhanced(status)
        if self.wire is not None:
            text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
            self.wire.pushed(text)
        if isinstance(status, str):
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")  # type: ignore[attr-defined]
        # aiosmtpd pushes a multi-line reply line by line, each its own write (and TLS
        # record); the "250-" lines wait here and leave with the last one in one write.
        # Likewise the replies to pipelined commands (RFC 2920 §3.1): while another
        # whole command waits in the input, its reply will follow at once. Replies the
        # client must see before it goes on (334, 354) or that end the session are
        # never held.
        reader = getattr(self, "_reader", None)
        pending = reader is not None and b"\n" in reader._buffer
        if (status[3:4] == b"-" and b"\n" not in status) or (
            pending and status[:3] not in _NEVER_HELD
        ):
            self._held.append(status + b"\r\n")
            return
        if self._held:
            status = b"".join(self._held) + status
            self._held = []
        await super().push(status)  # type: ignore[misc]

    def _enhanced(self, status: Any) -> Any:
        """The reply as the listener sends it: with its RFC 3463 code (the one table in
        app/protocols/smtp_replies.py), and with ENHANCEDSTATUSCODES offered in the
        EHLO/LHLO reply just before its last line (RFC 2034 §2)."""
        reader = getattr(self, "_reader", None)
        verb = getattr(reader, "verb", "")
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if "\r\n" not in text:  # nearly every reply: one line
            if verb in ("EHLO", "LHLO") and text.startswith("250 "):
                return f"250-{ESC_KEYWORD}\r\n{text}"
            out = enhance(verb, text)
            return status if out is text else out
        out = "\r\n".join(enhance(verb, line) for line in text.split("\r\n"))
        return out if out != text else status

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "RCPT":
            # Every listener: one copy per recipient, at most MAX_RECIPIENTS of them.
            rcpts = self.envelope.rcpt_tos  # type: ignore[attr-defined]
            address = str(args[0])
            if any(_same_mailbox(address, r) for r in rcpts):
                # RFC 5321 §3.3 lets a repeated recipient be accepted; it gets one copy.
                return "250 2.1.5 Ok"
            if len(rcpts) >= MAX_RECIPIENTS:
                return TOO_MANY_RECIPIENTS
        return await super()._call_handler_hook(command, *args)  # type: ignore[misc]

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd cancels its idle timer and makes a new one for every command. One
        # timer and a moving deadline do the same: when the timer fires early it is set
        # again for the time left (timers set at lower cost, like nginx's).
        loop = self.loop  # type: ignore[attr-defined]
        wait = duration or self._idle_wait()
        self._idle_deadline = loop.time() + wait
        handle = self._timeout_handle  # type: ignore[has-type]
        if handle is None or handle.cancelled() or handle.when() > self._idle_deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = loop.call_at(self._idle_deadline, self._idle_check)

    def _idle_wait(self) -> float:
        # Where a login is required, silence before it is cut much sooner (base.py).
        session = getattr(self, "session", None)
        required = getattr(self, "_auth_required", False)
        logged_in = not required or bool(session is not None and session.authenticated)
        return self.endpoint.timeout(logged_in)

    def _idle_check(self) -> None:
        loop = self.loop  # type: ignore[attr-defined]
        if loop.time() < self._idle_deadline:
            self._timeout_handle = loop.call_at(self._idle_deadline, self._idle_check)
        else:
            self._timeout_cb()

    def _timeout_cb(self) -> None:
        # aiosmtpd's idle timer closes silently; RFC 5321 §4.5.3.2 servers say 421 first.
        transport = self.transport  # type: ignore[attr-defined]
        # Not in the middle of a STARTTLS handshake: a reply in clear would break it.
        if transport is not None and self.wire is not None and self._early is None:
            line = f"421 4.4.2 {self.endpoint.hostname} Error: timeout exceeded"
            self.wire.pushed(line)
            with contextlib.suppress(Exception):
                transport.write(line.encode() + b"\r\n")
        super()._timeout_cb()  # type: ignore[misc]
        if transport is not None:
            # A client that never reads would keep close() waiting on its buffer forever.
            asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd builds a parse tree (and a class) for every address; most need neither.
        match = _SIMPLE_PATH.fullmatch(arg)
        if match is None:
            return super()._getaddr(arg)  # type: ignore[misc]
        local, domain, rest = match.groups()
        limit = self.local_part_limit  # type: ignore[attr-defined]
        if limit and len(local) > limit:
            return None, None
        return f"{local}@{domain}", rest or ""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's smtp_DATA with the message read in blocks (app/engines/smtp_data.py)
        instead of a readuntil per line; the checks, replies and hooks are its own."""
        if await self.check_helo_needed():  # type: ignore[attr-defined]
            return
        if await self.check_auth_needed("DATA"):  # type: ignore[attr-defined]
            return
        envelope = self.envelope  # type: ignore[attr-defined]
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, state = await read_message(
                self._reader,  # type: ignore[attr-defined]
                self.data_size_limit,  # type: ignore[attr-defined]
                self.line_length_limit,  # type: ignore[attr-defined]
            )
        except asyncio.CancelledError:
            self._writer.close()  # type: ignore[attr-defined]  # reset during DATA
            raise
        if state is _DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
        elif state is _DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
        if state is not _DataState.NOMINAL:
            self._set_post_data_state()  # type: ignore[attr-defined]
            return
        decoded: str | bytes = content
        if self._decode_data:  # type: ignore[attr-defined]
            if self.enable_SMTPUTF8:  # type: ignore[attr-defined]
                decoded = content.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    decoded = content.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        envelope.content = decoded
        envelope.original_content = content
        status = MISSING
        if "DATA" in self._handle_hooks:  # type: ignore[attr-defined]
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[attr-defined]
        await self.push("250 OK" if status is MISSING else status)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """aiosmtpd's STARTTLS with the handshake done by the event loop's own TLS layer
        (`loop.start_tls`: uvloop's, in C, in the lab's processes) instead of asyncio's
        pure-Python SSLProtocol, which aiosmtpd builds by hand whatever the loop. What
        follows the handshake is aiosmtpd's own `connection_made` (session reset per RFC
        3207 §4.2, `session.ssl`, the STARTTLS hook, `_tls_handshake_okay`); a handshake
        that fails or stalls past the limit ends the session as aiosmtpd's does."""
        if arg:
            await self.push("501 Syntax: STARTTLS")
            return
        if not self.tls_context:  # type: ignore[attr-defined]
            await self.push("454 TLS not available")
            return
        if self._tls_protocol is not None:  # type: ignore[attr-defined]
            # RFC 3207 §4: no TLS inside TLS. aiosmtpd would start another handshake
            # over the TLS session, which a client cannot follow; said and refused here.
            await self.push("554 5.5.1 Error: TLS already active")
            return
        # RFC 3207 §4.2: what came in clear after the command is never executed (it may be
        # a man in the middle's). Dropped before the 220, which push would otherwise hold
        # back as the answer to a pipelined group, and again for what came meanwhile.
        buffered = self._reader._buffer  # type: ignore[attr-defined]
        buffered.clear()
        await self.push("220 Ready to start TLS")
        buffered.clear()
        raw = self.transport  # type: ignore[attr-defined]
        self._early = []
        try:
            tls = await self.loop.start_tls(  # type: ignore[attr-defined]
                raw,
                self,
                self.tls_context,  # type: ignore[attr-defined]
                server_side=True,
                ssl_handshake_timeout=min(
                    self.endpoint.timeout(False), self.endpoint.tls_handshake_timeout
                ),
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # aiosmtpd's own: its session loop closes the connection
            raise TLSSetupException() from error
        finally:
            early, self._early = self._early, None
        if tls is None or tls.is_closing():
            # When the connection was closed under the handshake (the idle timer, where it
            # is no longer than the handshake limit), start_tls does not raise: asyncio's
            # returns None, uvloop's a transport already closing. Either way it is ended
            # as a failed handshake, so the slot is given back.
            raise TLSSetupException()
        self._original_transport = raw
        self._tls_protocol = _HandshakeDone(tls)
        self.connection_made(tls)  # aiosmtpd's STARTTLS branch, and the tap's note
        for data in early:
            self.data_received(data)

    async def smtp_AUTH(self, arg: str) -> None:
        await super().smtp_AUTH(arg)  # type: ignore[misc]
        if self.session.authenticated:  # type: ignore[attr-defined]
            self._reset_timeout()  # from now on the post-login idle time applies
        if self.wire is not None and self.wire.last_code == 535:
            # The 535 already waited out the back-off (push); after three misses the
            # session ends (RFC 4954 §4: not before three).
            self._login_failures += 1
            if self._login_failures >= 3:
                await self.push("421 4.7.0 Too many failed logins, closing connection")
                self.transport.close()  # type: ignore[attr-defined]


def _same_mailbox(a: str, b: str) -> bool:
    # The local part is the receiving host's to interpret (RFC 5321 §2.4); the lab's
    # mailboxes ignore its case, and a domain never has case.
    return a.casefold() == b.casefold()


class TappedSMTP(TappedMixin, SMTP):
    key_prefix = "smtp"

    def __init__(
        self,
        handler: Any,
        *,
        endpoint: Endpoint,
        sink: Sink,
        guard: LoginGuard | None = None,
        **kwargs: Any,
    ) -> None:
        self._tap_init(endpoint, sink, guard)
        super().__init__(handler, **kwargs)
        self._checked_reader()


class TappedLMTP(TappedMixin, LMTP):
    key_prefix = "lmtp"

    def __init__(
        self,
        handler: Any,
        *,
        endpoint: Endpoint,
        sink: Sink,
        guard: LoginGuard | None = None,
        **kwargs: Any,
    ) -> None:
        self._tap_init(endpoint, sink, guard)
        super().__init__(handler, **kwargs)
        self._checked_reader()

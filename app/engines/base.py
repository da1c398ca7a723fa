"""What every engine (SMTP, LMTP, POP3, IMAP) shares: where it sits in the journey,
who talks to it, and the limits that keep one bad client from hurting the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.engines.login_guard import LoginGuard
from app.engines.tls import LabTLS
from app.events import Sink, Tap
from app.world.accounts import Accounts
from app.world.mailstore import MailStore

MAILBOX_ACTOR = "mailbox"
# Silence allowed before a login, in seconds. Far shorter than the idle time after it:
# a mail program logs in at once, and otherwise 50 silent connections would fill a
# listener until the post-login timeout (10 min for POP3, 30 for IMAP) ran out.
PRE_LOGIN_TIMEOUT = 60.0
# A client that asked for TLS and then sends no ClientHello is cut after this long.
TLS_HANDSHAKE_TIMEOUT = 30.0
log = logging.getLogger("mailflow.engines")


def mailbox_actor(address: str | None) -> str:
    """The actor of one account's mailbox ("mailbox:bob@b.example"): each account is its
    own mailbox on screen, so a bounce to Alice never lands in "Bob's mailbox"."""
    return f"{MAILBOX_ACTOR}:{address.lower()}" if address else MAILBOX_ACTOR


@dataclass
class EngineContext:
    """The world an engine serves: mail on disk, logins, certificates, the event sink."""

    store: MailStore
    accounts: Accounts
    tls: LabTLS
    sink: Sink
    # Failed logins per client address, one record for SMTP AUTH, POP3 and IMAP alike.
    guard: LoginGuard = field(default_factory=LoginGuard)


@dataclass
class Endpoint:
    """One listener's place in the picture: panel, actors, protocol, standard port.

    `client_actor` names whoever connects. A scenario that plays two devices against
    one server queues the names of its next clients with `expect_client`.
    """

    panel: int
    protocol: str
    port: int  # the standard port this listener plays (587, 25, 110, ...)
    server_actor: str
    client_actor: str
    hostname: str = "localhost"
    implicit_tls: bool = False
    max_connections: int = 50
    idle_timeout: float = 300.0  # silence allowed after a login (or where none is needed)
    login_timeout: float = PRE_LOGIN_TIMEOUT  # silence allowed before a login
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT  # STARTTLS/STLS and implicit TLS
    _expected: deque[tuple[str, int | None]] = field(default_factory=deque)
    active: int = 0
    _idle_waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def expect_client(self, actor: str, panel: int | None = None) -> None:
        """The next connection is `actor`'s (shown in `panel` if given, e.g. an old
        MUA submitting on port 25 belongs to the submission panel)."""
        self._expected.append((actor, panel))

    def new_tap(self, sink: Sink) -> Tap:
        actor, panel = self._expected.popleft() if self._expected else (self.client_actor, None)
        return Tap(
            sink=sink,
            panel=panel or self.panel,
            client_actor=actor,
            server_actor=self.server_actor,
            protocol=self.protocol,
            port=self.port,
            tls=self.implicit_tls,
        )

    def timeout(self, logged_in: bool) -> float:
        """Seconds of silence before the server hangs up, before or after a login."""
        return self.idle_timeout if logged_in else min(self.login_timeout, self.idle_timeout)

    def try_acquire(self) -> bool:
        """Count a new connection; False when the listener is full."""
        if self.active >= self.max_connections:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)
        if self.active == 0:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_until_idle(self) -> None:
        """Return once no connection is open (e.g. after a stuck client was cut)."""
        if self.active == 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter


async def start_listener(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ctx: EngineContext,
    endpoint: Endpoint,
    host: str,
    port: int,
) -> asyncio.Server:
    """Listen for a POP3/IMAP adapter; with implicit TLS (995, 993) the handshake is
    done before `handle` runs, and a stalled one must not hold a connection slot for
    asyncio's default 60 s."""
    if not endpoint.implicit_tls:
        return await asyncio.start_server(handle, host, port)
    timeout = min(endpoint.timeout(False), endpoint.tls_handshake_timeout)
    return await asyncio.start_server(
        handle, host, port, ssl=ctx.tls.server_context, ssl_handshake_timeout=timeout
    )


async def close_server(server: asyncio.AbstractServer) -> None:
    server.close()
    await server.wait_closed()


async def drain_or_cut(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Wait for written bytes to leave; a client that never reads is cut after `timeout`.

    Without the limit one such client would hold its connection slot forever.
    """
    try:
        await asyncio.wait_for(writer.drain(), timeout)
    except TimeoutError:
        writer.transport.abort()
        raise ConnectionError("client stopped reading") from None


def abort_if_unsent(writer: asyncio.StreamWriter) -> None:
    """After a close, bytes the client never took must not keep the socket open."""
    with contextlib.suppress(Exception):  # a closed TLS transport may refuse to answer
        if writer.transport.get_write_buffer_size():
            writer.transport.abort()


async def start_tls_dropping_plaintext(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    timeout: float,
) -> int:
    """Switch a connection to TLS after STARTTLS/STLS; returns the plaintext octets dropped.

    Whatever the client sent after the command but before its ClientHello was sent in
    clear and may have been injected by a man in the middle; executing it after the
    handshake, as if it came through TLS, is the CVE-2011-0411 class of bug (RFC 3207
    §4.2 / RFC 2595 §3.1). The core drops what it holds; this drops what the stream
    reader already took from the socket. A stalled handshake is cut after `timeout`.
    """
    buffered = getattr(reader, "_buffer", None)  # StreamReader offers no public way
    dropped = 0
    if isinstance(buffered, bytearray):
        dropped = len(buffered)
        buffered.clear()
    await writer.start_tls(context, ssl_handshake_timeout=timeout)
    return dropped


def report_bug(protocol: str, exc: BaseException) -> None:
    """The error policy of every engine: an exception nobody expected is a bug. It is
    logged with its traceback, the client gets a generic server error and the
    connection is closed; it is never turned into an ordinary -ERR/NO that hides it."""
    log.error("%s session: unexpected error, connection closed", protocol, exc_info=exc)

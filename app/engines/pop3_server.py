"""POP3 listener: asyncio streams around the sans-IO core in app.protocols.pop3.

The core decides every reply; this module only moves bytes, runs the TLS
handshake, applies connection policy (limits, idle timeout, login delay) and
tells the event sink what crossed the wire, in wire order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from app.engines.base import (
    MAILBOX_ACTOR,
    Endpoint,
    EngineContext,
    abort_if_unsent,
    drain_or_cut,
)
from app.engines.tls import describe_tls
from app.events import Tap
from app.protocols.pop3 import (
    Action,
    Exchange,
    MessageInfo,
    POP3Connection,
    Reply,
    State,
    busy_reply,
    wire_size,
)
from app.world.accounts import Accounts
from app.world.mailstore import MailStore

READ_CHUNK = 4096
FAILED_LOGIN_DELAY = 0.25  # seconds per failed login so far: guessing gets slower
TLS_HANDSHAKE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0

# Called after each successful login with (user, peer address, the session's tap):
# POP before SMTP opens relaying for that address here.
LoginHook = Callable[[str, str, Tap], None]


class MailStoreBackend:
    """The core's `POP3Backend` over the lab's Maildirs and accounts (INBOX only)."""

    def __init__(self, store: MailStore, accounts: Accounts) -> None:
        self.store = store
        self.accounts = accounts

    def authenticate(self, user: str, password: str) -> bool:
        return self.accounts.check(user, password)

    def apop_secret(self, user: str) -> str | None:
        return self.accounts.password(user)

    def open(self, user: str) -> list[MessageInfo]:
        self.store.ensure_account(user)
        folder = self.store.folder(user)
        infos = []
        for message in folder.messages():
            try:
                if message.subdir == "new":  # a client has seen it: to cur/, as Dovecot does
                    folder.set_flags(message.key, message.flags, was=message)
                # Stored files use LF endings; POP3 sizes count the CRLF we send.
                infos.append(MessageInfo(message.key, wire_size(folder.read(message.key))))
            except (KeyError, FileNotFoundError):
                continue  # removed by another session between listing and reading
        return infos

    def read(self, user: str, key: str) -> bytes:
        return self.store.folder(user).read(key)

    def delete(self, user: str, keys: list[str]) -> list[str]:
        return self.store.folder(user).remove(keys)

    def inbox_state(self, user: str) -> str:
        """'INBOX: N messages — new/: a, cur/: b', from really listing the Maildir."""
        listing = self.store.folder(user).listing()
        new = sum(1 for path in listing if path.startswith("new/"))
        return f"INBOX: {len(listing)} messages — new/: {new}, cur/: {len(listing) - new}"


async def start_pop3_server(
    ctx: EngineContext,
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 0,
    on_login: LoginHook | None = None,
) -> asyncio.Server:
    """Listen for POP3 (STLS on a plain port, or implicit TLS when endpoint says so)."""
    backend = MailStoreBackend(ctx.store, ctx.accounts)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Session(ctx, endpoint, backend, reader, writer, on_login).run()

    # With ssl= the handshake is finished before on_connect runs.
    tls = ctx.tls.server_context if endpoint.implicit_tls else None
    if tls is None:
        return await asyncio.start_server(on_connect, host, port)
    # A stalled handshake must not hold a connection slot for asyncio's default 60 s.
    return await asyncio.start_server(
        on_connect, host, port, ssl=tls, ssl_handshake_timeout=min(endpoint.idle_timeout, 30.0)
    )


class _Session:
    """One client connection: read, feed the core, report, write."""

    def __init__(
        self,
        ctx: EngineContext,
        endpoint: Endpoint,
        backend: MailStoreBackend,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_login: LoginHook | None = None,
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.backend = backend
        self.reader = reader
        self.writer = writer
        self.on_login = on_login
        self.tap = endpoint.new_tap(ctx.sink)
        self.conn = POP3Connection(
            backend, hostname=endpoint.hostname, tls_active=endpoint.implicit_tls
        )

    async def run(self) -> None:
        if not self.endpoint.try_acquire():
            await self._send(busy_reply())
            await self._close()
            return
        try:
            await self._serve()
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
            # The client vanished or the handshake failed: RFC 1939 §6, no UPDATE.
            self.conn.connection_lost()
        finally:
            self.endpoint.release()
            await self._close()

    async def _serve(self) -> None:
        if self.tap.tls:
            self._note_tls()
        await self._send(self.conn.greeting())
        while not self.conn.closed:
            data = await self._read()
            if data is None:
                return
            was = self.conn.state
            for exchange in self.conn.receive_data(data):
                await self._answer(exchange, was)
                was = self.conn.state

    async def _read(self) -> bytes | None:
        """The next chunk, or None after EOF or the idle timeout (already answered)."""
        try:
            data = await asyncio.wait_for(
                self.reader.read(READ_CHUNK), timeout=self.endpoint.idle_timeout
            )
        except TimeoutError:
            await self._send(self.conn.timeout())
            return None
        if not data:
            self.conn.connection_lost()
            return None
        return data

    async def _answer(self, exchange: Exchange, was: State | None = None) -> None:
        command = exchange.command
        self.tap.client(command.text, command.key, command.detail)
        if exchange.login_failed:
            await asyncio.sleep(FAILED_LOGIN_DELAY * self.conn.failed_logins)
        # Events are emitted before the bytes leave, so whoever reads the reply
        # can already find it (and the mailbox notes) in the recording.
        self.tap.server(exchange.reply.text, exchange.reply.key)
        if (
            self.on_login is not None
            and was is State.AUTHORIZATION
            and self.conn.state is State.TRANSACTION
            and self.conn.user is not None
        ):
            peer = self.writer.get_extra_info("peername")
            self.on_login(self.conn.user, peer[0] if peer else "", self.tap)
        if exchange.updated:
            self._note_update(exchange.removed)
        self.writer.write(exchange.reply.data)
        if exchange.action is Action.START_TLS:
            # No await between the +OK and the switch: the client's ClientHello must
            # reach the TLS layer, never the plaintext buffer that is cleared below.
            await self._start_tls()
        else:
            await self._drain()

    async def _start_tls(self) -> None:
        # Plaintext the client pipelined after STLS must not count as encrypted
        # input (CVE-2011-0411); StreamReader offers no public way to drop it.
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        await self.writer.start_tls(
            self.ctx.tls.server_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
        )
        self.conn.tls_started()
        self.tap.tls = True
        self._note_tls()

    def _note_tls(self) -> None:
        description = describe_tls(self.writer.get_extra_info("ssl_object"))
        self.tap.note(description, "tls.handshake", protocol="TLS")

    def _note_update(self, removed: tuple[str, ...]) -> None:
        server = self.endpoint.server_actor
        for relpath in removed:
            self.tap.note(f"removed {relpath}", "maildir.remove", src=MAILBOX_ACTOR, dst=server)
        if self.conn.user is not None:
            state = self.backend.inbox_state(self.conn.user)
            self.tap.note(state, "maildir.state", src=MAILBOX_ACTOR, dst=server)

    async def _send(self, reply: Reply) -> None:
        self.tap.server(reply.text, reply.key)
        self.writer.write(reply.data)
        with contextlib.suppress(ConnectionError):
            await self._drain()

    async def _drain(self) -> None:
        await drain_or_cut(self.writer, self.endpoint.idle_timeout)

    async def _close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=CLOSE_TIMEOUT)
        abort_if_unsent(self.writer)

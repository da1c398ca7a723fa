"""POP3 listener: asyncio streams around the sans-IO core in app.protocols.pop3.

The core decides every reply; this module only moves bytes, runs the TLS
handshake, applies connection policy (limits, idle timeouts, the shared login
back-off, the maildrop lock) and tells the event sink what crossed the wire, in
wire order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections import deque
from collections.abc import Callable

from app.engines.base import (
    Endpoint,
    EngineContext,
    abort_if_unsent,
    drain_or_cut,
    mailbox_actor,
    report_bug,
    start_listener,
    start_tls_dropping_plaintext,
)
from app.engines.tls import describe_tls
from app.events import Tap
from app.protocols.pop3 import (
    Action,
    Exchange,
    MaildropEntry,
    MaildropInUse,
    OpenMaildrop,
    POP3Connection,
    Pop3Reply,
    ReadMessage,
    State,
    StorageRequest,
    busy_reply,
    internal_error_reply,
)
from app.world.accounts import Accounts
from app.world.folder_index import INDEXES
from app.world.mailstore import Folder, MailStore, StoredMessage

READ_CHUNK = 4096
CLOSE_TIMEOUT = 2.0

# Called after each successful login with (user, peer address, the session's tap):
# POP before SMTP opens relaying for that address here.
LoginHook = Callable[[str, str, Tap], None]


# Maildrops held by a POP3 session of this process (real paths). RFC 1939 §4: the
# server locks the maildrop at login, so two sessions never see different counts
# and numbers. POP3 is served by one process (the app; the lab's child process
# runs no POP3), so an in-memory set is the whole lock table.
_locked: set[str] = set()


class Pop3Maildrops:
    """The lab's Maildirs and accounts as the POP3 adapter serves them (INBOX only).

    The core asks for storage with StorageRequests (it runs with defer_io); this
    answers them: the lock on the loop, every disk operation (the lock's path, the
    folder listing, every file) in a worker thread, as IMAP's storage calls are: a listing
    on the loop could also wait there for a lock an IMAP storage thread holds."""

    def __init__(self, store: MailStore, accounts: Accounts) -> None:
        self.store = store
        self.accounts = accounts
        self._lock_keys: dict[str, str] = {}  # user → resolved account path, found off the loop

    def _lock_key(self, user: str) -> str:
        return os.path.realpath(self.store.account_path(user))

    def authenticate(self, user: str, password: str) -> bool:
        return self.accounts.check(user, password)

    def apop_secret(self, user: str) -> str | None:
        return self.accounts.password(user)

    async def open_maildrop(self, user: str) -> list[MaildropEntry]:
        """Lock and list the maildrop. Sizes come from the folder index (no message
        file is read for them), the move of new mail to cur/ happens off the loop."""
        key = self._lock_keys.get(user)
        if key is None:
            key = self._lock_keys[user] = await asyncio.to_thread(self._lock_key, user)
        if key in _locked:  # tested and taken with no await between: one loop, one owner
            raise MaildropInUse(user)
        _locked.add(key)
        try:
            return await asyncio.to_thread(self._open, user)
        except BaseException:
            _locked.discard(key)  # RFC 1939 §4: release the lock before refusing
            raise

    def _open(self, user: str) -> list[MaildropEntry]:
        self.store.ensure_account(user)
        folder = self.store.folder(user)
        return _open_listed(folder, folder.messages())

    def release(self, user: str) -> None:
        """The session that opened `user`'s maildrop is over."""
        key = self._lock_keys.get(user)
        if key is not None:
            _locked.discard(key)

    def read(self, user: str, key: str) -> bytes:
        return self.store.folder(user).read(key)

    def delete(self, user: str, keys: list[str]) -> list[str]:
        return self.store.folder(user).remove(keys)

    def inbox_state(self, user: str) -> str:
        # Called in a worker thread: it lists the folder.
        """'INBOX: N messages — new/: a, cur/: b', from really listing the Maildir."""
        listing = self.store.folder(user).listing()
        new = sum(1 for path in listing if path.startswith("new/"))
        return f"INBOX: {len(listing)} messages — new/: {new}, cur/: {len(listing) - new}"


def _open_listed(folder: Folder, listed: list[StoredMessage]) -> list[MaildropEntry]:
    """In a worker thread: take new mail out of new/ (a client has seen it, as Dovecot
    does) and size every message from the folder index (RETR sends CRLF lines)."""
    for message in listed:
        if message.subdir == "new":
            with contextlib.suppress(KeyError, FileNotFoundError):
                folder.set_flags(message.key, message.flags, was=message)
    # A message removed by an IMAP session meanwhile has no record: left out.
    summaries = INDEXES.summaries(folder.path, [m.key for m in listed])
    return [MaildropEntry(m.key, summaries[m.key].pop3_size) for m in listed if m.key in summaries]


async def start_pop3_server(
    ctx: EngineContext,
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 0,
    on_login: LoginHook | None = None,
    cleartext_login: bool = False,
) -> asyncio.Server:
    """Listen for POP3 (STLS on a plain port, or implicit TLS when endpoint says so).
    `cleartext_login` lets USER/PASS through before STLS (a scenario that shows it)."""
    backend = Pop3Maildrops(ctx.store, ctx.accounts)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(ctx, endpoint, backend, reader, writer, on_login, cleartext_login)
        await session.run()

    return await start_listener(on_connect, ctx, endpoint, host, port)


class _Session:
    """One client connection: read, feed the core, report, write."""

    def __init__(
        self,
        ctx: EngineContext,
        endpoint: Endpoint,
        backend: Pop3Maildrops,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_login: LoginHook | None = None,
        cleartext_login: bool = False,
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.backend = backend
        self.reader = reader
        self.writer = writer
        self.on_login = on_login
        self.tap = endpoint.new_tap(ctx.sink)
        self.conn = POP3Connection(
            backend,  # type: ignore[arg-type]  # its storage goes through _perform
            hostname=endpoint.hostname,
            tls_active=endpoint.implicit_tls,
            cleartext_login=cleartext_login,
            defer_io=True,
        )
        self._holding: str | None = None  # the maildrop this session has locked
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""

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
        except Exception as exc:  # a bug: logged, answered, the connection closed
            report_bug("POP3", exc)
            self.conn.connection_lost()  # no UPDATE state: nothing is removed
            await self._send(internal_error_reply())
        finally:
            # The lock goes first: whoever waits for the connection count to drop
            # (the scenario runner) may log in again at once.
            self._release_maildrop()
            self.endpoint.release()
            await self._close()

    def _release_maildrop(self) -> None:
        if self._holding is not None:
            self.backend.release(self._holding)
            self._holding = None

    async def _serve(self) -> None:
        if self.tap.tls:
            self._note_tls()
        await self._send(self.conn.greeting())
        while not self.conn.closed:
            data = await self._read()
            if data is None:
                return
            was = self.conn.state
            items = deque(self.conn.receive_data(data))
            while items:
                item = items.popleft()
                if isinstance(item, Exchange):
                    await self._answer(item, was)
                    was = self.conn.state
                else:  # the core waits for storage: done off the loop, then it goes on
                    value, error = await self._perform(item)
                    items.extend(self.conn.storage_done(value, error))

    async def _perform(self, request: StorageRequest) -> tuple[object, BaseException | None]:
        """Answer the core's storage request; an exception is handed back to the core,
        which answers -ERR for a storage error and raises anything else again."""
        try:
            if isinstance(request, OpenMaildrop):
                value: object = await self.backend.open_maildrop(request.user)
                self._holding = request.user
            elif isinstance(request, ReadMessage):
                value = await asyncio.to_thread(self.backend.read, request.user, request.key)
            else:
                keys = list(request.keys)
                value = await asyncio.to_thread(self.backend.delete, request.user, keys)
        except Exception as exc:
            return None, exc
        return value, None

    async def _read(self) -> bytes | None:
        """The next chunk, or None after EOF or the idle timeout (already answered)."""
        logged_in = self.conn.state is State.TRANSACTION
        try:
            data = await asyncio.wait_for(
                self.reader.read(READ_CHUNK), timeout=self.endpoint.timeout(logged_in)
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
            await self.ctx.guard.hold(self.peer, self.tap)
        if self.conn.maildrop is not None and self._holding is None:
            self._holding = self.conn.maildrop
        if exchange.action is Action.CLOSE:
            # Unlocked before the goodbye leaves, so a client that reconnects at
            # once is not told the maildrop is still in use.
            self._release_maildrop()
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
            await self._note_update(exchange.removed)
        self.writer.write(exchange.reply.data)
        if exchange.action is Action.START_TLS:
            # No await between the +OK and the switch: the client's ClientHello must
            # reach the TLS layer, never the plaintext buffer that is cleared below.
            await self._start_tls()
        else:
            await self._drain()

    async def _start_tls(self) -> None:
        # Plaintext the client pipelined after STLS must not count as encrypted
        # input (CVE-2011-0411): base.py drops it, and bounds the handshake.
        await start_tls_dropping_plaintext(
            self.reader,
            self.writer,
            self.ctx.tls.server_context,
            self.endpoint.tls_handshake_timeout,
        )
        self.conn.tls_started()
        self.tap.tls = True
        self._note_tls()

    def _note_tls(self) -> None:
        description = describe_tls(self.writer.get_extra_info("ssl_object"))
        self.tap.note(description, "tls.handshake", protocol="TLS")

    async def _note_update(self, removed: tuple[str, ...]) -> None:
        server = self.endpoint.server_actor
        mailbox = mailbox_actor(self.conn.user)
        for relpath in removed:
            self.tap.note(f"removed {relpath}", "maildir.remove", src=mailbox, dst=server)
        if self.conn.user is not None:
            state = await asyncio.to_thread(self.backend.inbox_state, self.conn.user)
            self.tap.note(state, "maildir.state", src=mailbox, dst=server)

    async def _send(self, reply: Pop3Reply) -> None:
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

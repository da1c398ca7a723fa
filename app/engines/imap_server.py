"""The IMAP listener: asyncio streams around the sans-IO core in app.protocols.imap.

The adapter only moves bytes and turns the core's outputs into events, and answers
the core's storage requests off the event loop: message files in worker threads
(asyncio.to_thread), every other backend call (StorageCalls: listings and UIDs, flag
renames, folder management, subscriptions) in one storage thread shared by all
sessions, in the order asked. Nothing on the loop touches the disk. It also
wakes IDLE sessions: whoever changes a Maildir folder in this process calls
`notify_mailbox_changed(folder_path)`; changes from other processes are caught by
polling once a second while a client idles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from app.events import Tap, wire_text
from app.protocols.imap import (
    ClientSent,
    Close,
    ImapConnection,
    MailboxChanged,
    MailboxNote,
    Output,
    ReadMessages,
    ReadSummaries,
    RemoveFiles,
    Send,
    StartTLS,
    StorageCalls,
    WriteMessages,
)
from app.protocols.imap.mime import ParsedMessage
from app.protocols.imap.reads import Call, prepare, run_calls
from app.protocols.imap.summary import Summary
from app.world.accounts import Accounts
from app.world.folder_index import INDEXES, list_files, read_message, record_delivery
from app.world.mailstore import Folder, MailStore, StoredMessage

log = logging.getLogger("mailflow.imap")
IDLE_POLL_SECONDS = 1.0
READ_CHUNK = 64 * 1024
CLOSE_GRACE = 5.0  # seconds a closing connection may take to flush its last bytes
SUBSCRIPTIONS_FILE = "subscriptions"  # one name per line, like Dovecot's

# One thread runs every session's StorageCalls, one batch after another: a listing
# hands out UIDs (read-modify-write of the folder's UID file), and folder management
# and the subscriptions file must not interleave between two sessions of one user,
# just as when all of it ran on the event loop. Message files are read and written
# in asyncio's worker threads instead: those touch only files with unique names.
STORAGE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-storage")


# -- change notification -------------------------------------------------------------
class _Watcher:
    """One session waiting for changes to one folder; safe to wake from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the session's loop is already closed
            self.loop.call_soon_threadsafe(self.event.set)


_watchers: dict[str, set[_Watcher]] = {}
_watchers_lock = threading.Lock()


def _path_key(path: Path | str) -> str:
    # Spelling only (no symlinks resolved: that would stat on the event loop). Every
    # caller builds folder paths from the same MailStore root.
    return os.path.normpath(os.path.abspath(path))


def notify_mailbox_changed(path: Path) -> None:
    """Tell IMAP sessions in this process that the Maildir folder at `path` changed
    (new mail delivered, flags changed, messages removed). INBOX is the account's
    Maildir root; other folders are its `.Name` subdirectories."""
    if not _watchers:
        return  # nobody is in IDLE or has a folder selected: skip resolving the path
    with _watchers_lock:
        targets = list(_watchers.get(_path_key(path), ()))
    for watcher in targets:
        watcher.wake()


def _watch(key: str, watcher: _Watcher) -> None:
    with _watchers_lock:
        _watchers.setdefault(key, set()).add(watcher)


def _unwatch(key: str, watcher: _Watcher) -> None:
    with _watchers_lock:
        group = _watchers.get(key)
        if group is not None:
            group.discard(watcher)
            if not group:
                del _watchers[key]


# -- the backend over MailStore + Accounts ------------------------------------------------
def _safe_name(name: str) -> str:
    # Folder names become directory names: no path tricks.
    if name != "INBOX" and (not name or "/" in name or "\x00" in name or name.startswith(".")):
        raise KeyError(name)
    return name


class ImapUserFolders:
    """One account's folders in the lab MailStore (implements UserMailboxes)."""

    def __init__(self, store: MailStore, address: str) -> None:
        self.store = store
        self.address = address
        self._seen_at: dict[str, dict[str, StoredMessage]] = {}  # as last listed, by key

    def ensure(self) -> None:
        """Create the account's Maildir on first use (in the storage thread, not at LOGIN
        on the event loop); after that a set lookup."""
        self.store.ensure_account(self.address)

    def folder(self, name: str) -> Folder:
        return self.store.folder(self.address, _safe_name(name))

    def path(self, name: str) -> Path:
        return self.folder(name).path

    def list(self) -> list[str]:
        return self.store.folder_names(self.address)

    def exists(self, name: str) -> bool:
        try:
            self.folder(name)
        except KeyError:
            return False
        return True

    def create(self, name: str) -> None:
        self.store.create_folder(self.address, _safe_name(name))

    def delete(self, name: str) -> None:
        self.store.delete_folder(self.address, _safe_name(name))

    def rename(self, old: str, new: str) -> None:
        """All or nothing: a failure part way moves back what had moved, then raises."""
        _safe_name(new)
        subscribed = self.subscriptions()
        # Maildir++ keeps children as sibling directories (.Old.Child): move them too.
        moves = [
            (name, new + name[len(old) :])
            for name in self.list()
            if name == old or name.startswith(old + ".")
        ]
        done: list[tuple[str, str]] = []
        try:
            for src, dst in moves:
                self.store.rename_folder(self.address, src, dst)
                done.append((src, dst))
        except OSError:
            for src, dst in reversed(done):
                try:
                    self.store.rename_folder(self.address, dst, src)
                except OSError:
                    log.exception("RENAME: could not move %s back to %s", dst, src)
            raise
        if old in subscribed:
            self.set_subscribed(old, False)
            self.set_subscribed(new, True)

    def _subscriptions_file(self) -> Path:
        return self.store.account_path(self.address) / SUBSCRIPTIONS_FILE

    def subscriptions(self) -> set[str]:
        file = self._subscriptions_file()
        if not file.exists():
            return set(self.list())  # until the user says otherwise, every folder
        return {line for line in file.read_text("utf-8").splitlines() if line}

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        names = self.subscriptions()
        if subscribed:
            names.add(name)
        else:
            names.discard(name)
        file = self._subscriptions_file()
        tmp = file.with_name(file.name + ".tmp")
        tmp.write_text("".join(f"{n}\n" for n in sorted(names)), "utf-8")
        os.replace(tmp, file)

    def messages(self, name: str) -> Sequence[StoredMessage]:
        found = self.folder(name).messages()
        # Where each file is now, so a flag change needs no listing of the folder.
        self._seen_at[name] = {m.key: m for m in found}
        return found

    def uidvalidity(self, name: str) -> int:
        return self.folder(name).uidvalidity

    def uidnext(self, name: str) -> int:
        return self.folder(name).uidnext

    def read(self, name: str, key: str) -> bytes:
        return self.folder(name).read(key)

    def set_flags(self, name: str, key: str, flags: frozenset[str]) -> str:
        known = self._seen_at.get(name, {})
        was = known.pop(key, None)  # only once: after this the listing is out of date
        return self.folder(name).set_flags(key, flags, was=was)

    def remove(self, name: str, keys: list[str]) -> list[str]:
        return self.folder(name).remove(keys)

    def append(
        self, name: str, data: bytes, flags: frozenset[str], internaldate: float | None
    ) -> StoredMessage:
        return self.folder(name).add(
            data, host=self.store.host, flags=flags, internaldate=internaldate
        )

    def register(self, name: str, key: str, flags: frozenset[str]) -> StoredMessage:
        folder = self.folder(name)
        folder.store_keywords(key, flags)
        return folder.find(key)

    def copy(self, src: str, key: str, dst: str) -> StoredMessage:
        source = self.folder(src)
        info = next((m for m in source.messages() if m.key == key), None)
        if info is None:
            raise KeyError(key)
        return self.folder(dst).add(
            source.read(key),
            host=self.store.host,
            flags=info.flags,
            internaldate=info.internaldate,
        )

    def listing(self, name: str) -> list[str]:
        return self.folder(name).listing()


class ImapMailStore:
    """ImapBackend over the lab's MailStore and Accounts."""

    def __init__(self, store: MailStore, accounts: Accounts) -> None:
        self.store = store
        self.accounts = accounts

    def login(self, user: str, password: str) -> ImapUserFolders | None:
        if not self.accounts.check(user, password):
            return None
        return ImapUserFolders(self.store, user.lower())


def _run_calls(mailboxes: ImapUserFolders, calls: Sequence[Call]) -> list[Any]:
    """Runs in the storage thread (STORAGE)."""
    mailboxes.ensure()
    return run_calls(mailboxes, calls)


def _read_folder(store: MailStore, user: str, request: ReadMessages) -> dict[str, ParsedMessage]:
    """Runs in a worker thread, the folder looked up there too (a stat)."""
    try:
        folder = store.folder(user, _safe_name(request.mailbox))
    except KeyError:
        return {}
    return _read_messages(folder, request.keys, request.text)


def _folder_summaries(store: MailStore, user: str, request: ReadSummaries) -> dict[str, Summary]:
    try:
        folder = store.folder(user, _safe_name(request.mailbox))
    except KeyError:
        return {}
    return INDEXES.summaries(folder.path, request.keys)


def _summaries_and_calls(
    mailboxes: ImapUserFolders, store: MailStore, user: str, request: ReadSummaries
) -> tuple[dict[str, Summary], list[Any] | None]:
    """Runs in the storage thread: the index records, then the request's calls (the
    folder listing the FETCH reply ends with) in the same trip. None: the calls failed,
    and the core lists the folder itself later."""
    summaries = _folder_summaries(store, user, request)
    try:
        return summaries, _run_calls(mailboxes, request.calls)
    except (KeyError, OSError):
        return summaries, None


def _write_folder(store: MailStore, user: str, request: WriteMessages) -> list[str | None]:
    dst = store.folder(user, _safe_name(request.mailbox))
    sources = {
        m.source[0]: store.folder(user, _safe_name(m.source[0]))
        for m in request.messages
        if m.source is not None
    }
    return _write_messages(dst, sources, request, store.host)


def _remove_files(store: MailStore, user: str, request: RemoveFiles) -> list[str]:
    return store.folder(user, _safe_name(request.mailbox)).remove(list(request.keys))


def _read_messages(folder: Folder, keys: Sequence[str], text: bool) -> dict[str, ParsedMessage]:
    """Runs in a worker thread: only reads files (no UID bookkeeping), so it is safe
    beside the event loop; a message expunged meanwhile is left out."""
    found = {}
    files = folder.files()  # one listing, not one per message
    for key in keys:
        path = files.get(key)
        if path is None:
            continue
        try:
            data = read_message(path)
        except FileNotFoundError:  # its flags changed meanwhile: look it up again
            try:
                data = folder.read(key)
            except (KeyError, OSError):
                continue
        except OSError:
            continue
        found[key] = prepare(data, text)
        # Parsing holds the GIL; a thread keeps it for up to 5 ms (the switch interval)
        # while the event loop, serving every web page, waits. Hand it over after
        # each message, so a SEARCH TEXT over a big folder costs the loop ~1 ms slices.
        time.sleep(0)
    return found


def _write_messages(
    dst: Folder, sources: dict[str, Folder], request: WriteMessages, host: str
) -> list[str | None]:
    """Runs in a worker thread: only files with new unique names are written (no UID
    bookkeeping), and each new message's folder index record is appended."""
    keys: list[str | None] = []
    for m in request.messages:
        data = m.data
        if data is None and m.source is not None:
            src = sources[m.source[0]]
            data = _read_one(src, m.source[1])
            if data is None:
                keys.append(None)  # expunged meanwhile
                continue
        assert data is not None
        key = dst.write(data, host=host, flags=m.flags, internaldate=m.internaldate)
        try:
            record_delivery(dst.path, key, data)
        except Exception:  # rebuilt from the file on first read
            log.exception("folder index: no record for %s", key)
        keys.append(key)
    return keys


def _read_one(folder: Folder, key: str) -> bytes | None:
    path = list_files(folder.path).get(key)
    if path is None:
        return None
    try:
        return read_message(path)
    except FileNotFoundError:  # renamed (flags) meanwhile: look once more
        path = list_files(folder.path).get(key)
        return read_message(path) if path is not None else None


# -- one connection ------------------------------------------------------------------
class _Session:
    def __init__(
        self,
        ctx: EngineContext,
        endpoint: Endpoint,
        backend: ImapMailStore,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cleartext_login: bool = False,
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.backend = backend
        self.reader = reader
        self.writer = writer
        self.tap: Tap = endpoint.new_tap(ctx.sink)
        self.conn = ImapConnection(
            backend,
            hostname=endpoint.hostname,
            tls_active=endpoint.implicit_tls,
            starttls_available=not endpoint.implicit_tls,
            cleartext_login=cleartext_login,
            defer_reads=True,  # message contents are read in a worker thread (load())
        )
        self.closing = False
        self.watcher = _Watcher()
        self.watching: str | None = None

    async def run(self) -> None:
        if not self.endpoint.try_acquire():
            await self.send_and_close(b"* BYE Too many connections, try again later\r\n")
            return
        try:
            if self.endpoint.implicit_tls:
                self.tls_note()
            await self.apply(self.conn.greeting())
            await self.serve()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing left to say
        except Exception as exc:  # a bug: logged, answered, the connection closed
            report_bug("IMAP", exc)
            await self.send_and_close(b"* BYE [SERVERBUG] Internal server error\r\n")
        finally:
            self.endpoint.release()
            self.set_watch(None)
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), CLOSE_GRACE)
            abort_if_unsent(self.writer)

    async def send_and_close(self, line: bytes) -> None:
        self.writer.write(line)
        self.tap.server(wire_text(line), "imap.bye")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.drain(), CLOSE_GRACE)
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_GRACE)
        abort_if_unsent(self.writer)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        while not self.closing:
            read = asyncio.ensure_future(self.reader.read(READ_CHUNK))
            try:
                while not read.done():
                    # Before a login the silence allowed is much shorter (base.py).
                    allowed = self.endpoint.timeout(self.conn.user is not None)
                    left = allowed - (loop.time() - last_heard)
                    if left <= 0:
                        await self.apply(self.conn.bye("Autologout; idle for too long"))
                        return
                    waits: set[asyncio.Future[object]] = {read}  # type: ignore[arg-type]
                    if self.conn.idling:
                        waits.add(asyncio.ensure_future(self.watcher.event.wait()))
                        left = min(left, IDLE_POLL_SECONDS)
                    await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                    for extra in waits - {read}:
                        extra.cancel()
                    if self.conn.idling and not read.done():
                        self.watcher.event.clear()
                        await self.apply(self.conn.poll())
            finally:
                if not read.done():
                    read.cancel()
            data = read.result()
            if not data:
                return
            last_heard = loop.time()
            failures = self.conn.login_failures
            outputs = self.conn.receive_data(data)
            await self.apply(outputs, held=self.conn.login_failures > failures)
            self.update_watch()

    async def apply(self, outputs: list[Output], held: bool = False) -> None:
        """`held`: a login failed in this batch; its NO waits out the shared back-off."""
        queue = deque(outputs)
        while queue:
            out = queue.popleft()
            if held and isinstance(out, Send) and out.key.endswith(".no"):
                held = False
                peer = self.writer.get_extra_info("peername")
                address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
                await self.ctx.guard.hold(address, self.tap)
            if isinstance(out, ReadMessages):
                # Write what the command has said so far, read off the loop, go on.
                await self.drain()
                queue.extend(self.conn.messages_loaded(await self.load(out)))
            elif isinstance(out, ReadSummaries):
                loaded, results = await self.summaries(out)
                queue.extend(self.conn.summaries_loaded(loaded, results))
            elif isinstance(out, StorageCalls):
                try:
                    results = await self.storage(out)
                except (KeyError, OSError) as exc:  # the command answers NO, nothing else
                    queue.extend(self.conn.storage_done([], exc))
                else:
                    queue.extend(self.conn.storage_done(results))
            elif isinstance(out, WriteMessages):
                await self.drain()
                try:
                    keys = await self.write(out)
                except (KeyError, OSError) as exc:  # the command answers NO, the session goes on
                    queue.extend(self.conn.messages_written([], exc))
                else:
                    queue.extend(self.conn.messages_written(keys))
            elif isinstance(out, RemoveFiles):
                await self.drain()
                try:
                    paths = await self.remove(out)
                except (KeyError, OSError) as exc:
                    queue.extend(self.conn.files_removed([], exc))
                else:
                    queue.extend(self.conn.files_removed(paths))
            elif isinstance(out, Send):
                self.writer.write(out.data)
                self.tap.server(wire_text(out.data), out.key)
            elif isinstance(out, ClientSent):
                self.tap.client(wire_text(out.data), out.key, out.detail or None)
            elif isinstance(out, MailboxNote):
                mailbox = mailbox_actor(self.conn.user)
                self.tap.note(out.text, out.key, src=mailbox, dst=self.endpoint.server_actor)
            elif isinstance(out, MailboxChanged):
                with contextlib.suppress(KeyError):
                    name = _safe_name(out.mailbox)
                    notify_mailbox_changed(self.ctx.store.folder_path(out.user, name))
            elif isinstance(out, StartTLS):
                # No await between the tagged OK and the switch: the ClientHello must
                # reach the TLS layer, never the plaintext buffer dropped here.
                await start_tls_dropping_plaintext(
                    self.reader,
                    self.writer,
                    self.ctx.tls.server_context,
                    self.endpoint.tls_handshake_timeout,
                )
                self.tap.tls = True
                self.tls_note()
            elif isinstance(out, Close):
                self.closing = True
        await self.drain()

    async def load(self, request: ReadMessages) -> dict[str, ParsedMessage]:
        """Read and parse the messages a command needs in a worker thread: a FETCH of
        bodies or a SEARCH TEXT over a big folder must not stall everyone else."""
        user = self.conn.user
        if user is None:
            return {}
        return await asyncio.to_thread(_read_folder, self.ctx.store, user, request)

    async def summaries(
        self, request: ReadSummaries
    ) -> tuple[dict[str, Summary], list[Any] | None]:
        """The folder index's records, from a worker thread: it stats the index files,
        reads what another process appended, and builds any missing record. With
        `calls` (the last trip of a FETCH), in the storage thread, where the calls run
        after it: one trip instead of a second one for the listing."""
        user = self.conn.user
        if user is None:
            return {}, None
        if not request.calls:
            return await asyncio.to_thread(_folder_summaries, self.ctx.store, user, request), None
        mailboxes = self.conn.mailboxes
        assert isinstance(mailboxes, ImapUserFolders)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            STORAGE, _summaries_and_calls, mailboxes, self.ctx.store, user, request
        )

    async def storage(self, request: StorageCalls) -> list[Any]:
        """Listings, flag renames, folder management: in the storage thread, in order."""
        mailboxes = self.conn.mailboxes
        assert isinstance(mailboxes, ImapUserFolders)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(STORAGE, _run_calls, mailboxes, request.calls)

    async def write(self, request: WriteMessages) -> list[str | None]:
        """APPEND/COPY: write the files in a worker thread (tmp/, fsync, rename: the
        slow part); the core then registers them on the loop, where UIDs are given."""
        user = self.conn.user
        if user is None:
            return [None] * len(request.messages)
        return await asyncio.to_thread(_write_folder, self.ctx.store, user, request)

    async def remove(self, request: RemoveFiles) -> list[str]:
        """Expunge in a worker thread: unlinks and two directory fsyncs."""
        user = self.conn.user
        if user is None:
            return []
        return await asyncio.to_thread(_remove_files, self.ctx.store, user, request)

    async def drain(self) -> None:
        await drain_or_cut(self.writer, self.endpoint.idle_timeout)

    def tls_note(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        self.tap.note(describe_tls(ssl_object), "tls.handshake", protocol="TLS")

    def update_watch(self) -> None:
        selected = self.conn.selected
        path = None
        if selected is not None and self.conn.user is not None:
            with contextlib.suppress(KeyError):  # the path only: no stat on the loop
                folder = self.ctx.store.folder_path(self.conn.user, _safe_name(selected.name))
                path = _path_key(folder)
        self.set_watch(path)

    def set_watch(self, key: str | None) -> None:
        if key == self.watching:
            return
        if self.watching is not None:
            _unwatch(self.watching, self.watcher)
        if key is not None:
            _watch(key, self.watcher)
        self.watching = key


async def start_imap_server(
    ctx: EngineContext,
    endpoint: Endpoint,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    cleartext_login: bool = False,
) -> asyncio.Server:
    """Listen for IMAP on host:port (0 = any free port); implicit TLS when the endpoint says so.

    `cleartext_login`: accept LOGIN/AUTHENTICATE before STARTTLS. Off by default, as
    Dovecot's disable_plaintext_auth: the server then advertises LOGINDISABLED."""
    backend = ImapMailStore(ctx.store, ctx.accounts)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Session(ctx, endpoint, backend, reader, writer, cleartext_login).run()

    return await start_listener(handle, ctx, endpoint, host, port)

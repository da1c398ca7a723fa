"""Mailboxes on disk: one Maildir per account, folders as Maildir++ subfolders.

Built on the stdlib `mailbox.Maildir`. What Maildir itself does not keep, IMAP
needs: stable UIDs and a UIDVALIDITY per folder, and keywords ($Junk, $Label1: a
file name holds only the system flags). Those live in a small JSON file per folder
(`mailflow-uids.json`), written durably, the way Dovecot keeps its dovecot-uidlist
and dovecot-keywords beside the mail.

The store does no I/O besides the file system and emits no events: callers (the
MDA, the POP3 and IMAP adapters) say what happened using the paths it returns.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import mailbox
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from app.world.durable import COMMITS, fsync_dir, write_durably
from app.world.folder_index import read_message, record_delivery

log = logging.getLogger("mailflow.mailstore")
FOLDERS = ("INBOX", "Sent", "Trash")
UID_FILE = "mailflow-uids.json"
# Per account, the last UIDVALIDITY handed out (Dovecot keeps dovecot-uidvalidity).
UIDVALIDITY_FILE = "mailflow-uidvalidity"

# IMAP system flag <-> Maildir info letter (https://cr.yp.to/proto/maildir.html).
FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}

_counter = 0
_counter_lock = threading.Lock()


def _unique_name(host: str) -> str:
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{n}.{host}"


def _write_atomic(path: Path, data: bytes) -> None:
    write_durably(path.with_name(path.name + ".tmp"), path, data)


_uidvalidity_lock = threading.Lock()
# Per folder: the UID file is read, changed and written back. IMAP does that in its
# storage thread, POP3 and the mailbox viewer on the event loop: one at a time.
# Held weakly: a lock lives while someone uses it (anyone waiting holds a reference, so
# all get the same one) and goes with its last user, so a long-lived process that sees
# fresh folders for every scenario run does not keep a lock per folder forever.
_uid_locks: weakref.WeakValueDictionary[Path, threading.RLock] = weakref.WeakValueDictionary()
_uid_locks_guard = threading.Lock()


def _uid_lock(folder: Path) -> threading.RLock:
    with _uid_locks_guard:
        lock = _uid_locks.get(folder)
        if lock is None:
            lock = _uid_locks[folder] = threading.RLock()
        return lock


def next_uidvalidity(account_root: Path) -> int:
    """A UIDVALIDITY never given before in this account (RFC 3501 §2.3.1.1): a folder
    deleted and created again, even within the same second or after a restart, must
    not let a client's cached UIDs name other messages. Seconds since the epoch, but
    always above the last one handed out, which is kept on disk."""
    with _uidvalidity_lock:
        file = account_root / UIDVALIDITY_FILE
        try:
            last = int(file.read_text("ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            last = 0
        value = max(int(time.time()), last + 1)
        _write_atomic(file, b"%d\n" % value)
        return value


@dataclass(slots=True)
class StoredMessage:
    key: str  # Maildir unique name, also the POP3 UIDL
    uid: int
    size: int
    flags: frozenset[str]  # IMAP flags, e.g. {"\\Seen"}
    subdir: str  # "new" or "cur"
    internaldate: float  # file mtime, seconds since the epoch

    @property
    def relpath(self) -> str:
        letters = "".join(sorted(FLAG_LETTERS[f] for f in self.flags if f in FLAG_LETTERS))
        if self.subdir == "new":
            return f"new/{self.key}"
        return f"cur/{self.key}:2,{letters}"


SETTLE_NS = 2_000_000_000  # a directory time this old cannot hide a change in its tick
MAX_LISTINGS = 256


class Listings:
    """Settled folder listings by path (one MailStore: IMAP's storage thread, POP3 and
    the viewer on the event loop)."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple[int, ...], list[StoredMessage]]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> tuple[tuple[int, ...], list[StoredMessage]] | None:
        with self._lock:
            return self._entries.get(path)

    def remember(
        self, path: Path, stamp: tuple[int, ...] | None, result: list[StoredMessage]
    ) -> None:
        now = time.time_ns()
        with self._lock:
            if stamp is None or any(now - t < SETTLE_NS for t in stamp):
                self._entries.pop(path, None)  # changed just now: list it again next time
                return
            if path not in self._entries and len(self._entries) >= MAX_LISTINGS:
                self._entries.pop(next(iter(self._entries)))
            self._entries[path] = (stamp, list(result))


@dataclass
class Folder:
    """One Maildir folder with its UID map."""

    name: str
    path: Path
    _uids: dict[str, object] = field(default_factory=dict)
    listings: Listings | None = None  # the store's cache of settled folder listings

    @property
    def maildir(self) -> mailbox.Maildir:
        return mailbox.Maildir(self.path, factory=None, create=True)

    # -- UID bookkeeping -------------------------------------------------
    def _load_uids(self) -> dict[str, object]:
        file = self.path / UID_FILE
        if file.exists():
            return json.loads(file.read_text("utf-8"))
        # UIDVALIDITY: new for every creation of the folder; stable afterwards.
        root = self.path if self.name == "INBOX" else self.path.parent
        validity = next_uidvalidity(root)
        data: dict[str, object] = {"uidvalidity": validity, "uidnext": 1, "uids": {}}
        _write_atomic(file, json.dumps(data).encode())
        return data

    def _save_uids(self, data: dict[str, object]) -> None:
        _write_atomic(self.path / UID_FILE, json.dumps(data).encode())

    @property
    def uidvalidity(self) -> int:
        with _uid_lock(self.path):  # the first look writes the file
            return int(self._load_uids()["uidvalidity"])  # type: ignore[arg-type]

    @property
    def uidnext(self) -> int:
        self.messages()
        return int(self._load_uids()["uidnext"])  # type: ignore[arg-type]

    def _stamp(self) -> tuple[int, ...] | None:
        """Modification times of new/, cur/ and the index: any delivery, rename, removal
        or keyword change moves one of them."""
        try:
            paths = (self.path / "new", self.path / "cur", self.path / UID_FILE)
            return tuple(os.stat(p).st_mtime_ns for p in paths)
        except FileNotFoundError:
            return None

    def messages(self) -> list[StoredMessage]:
        """All messages in UID order; new files get the next UIDs, vanished ones are dropped.

        Every IMAP command ends with this, so an unchanged folder is not listed again:
        like Dovecot's maildir sync, a listing is reused while the directories' times
        are unchanged and were already settled (older than SETTLE_NS) when it was made,
        since a change within the same clock tick would not move them."""
        stamp = self._stamp() if self.listings is not None else None
        if stamp is not None and self.listings is not None:
            hit = self.listings.get(self.path)
            if hit is not None and hit[0] == stamp:
                return list(hit[1])
        result = self._list_and_index()
        if self.listings is not None:
            self.listings.remember(self.path, self._stamp(), result)
        return result

    def _list_and_index(self) -> list[StoredMessage]:
        with _uid_lock(self.path):
            return self._list_and_index_locked()

    def _list_and_index_locked(self) -> list[StoredMessage]:
        data = self._load_uids()
        uids: dict[str, int] = data["uids"]  # type: ignore[assignment]
        uidnext = int(data["uidnext"])  # type: ignore[arg-type]
        found: list[tuple[str, str, str, os.stat_result]] = []
        for sub in ("new", "cur"):
            d = self.path / sub
            if not d.is_dir():
                continue
            for entry in os.scandir(d):
                if entry.name.startswith("."):
                    continue
                key, _, info = entry.name.partition(":2,")
                found.append((key, sub, info, entry.stat()))
        # Order new arrivals by delivery time so UIDs follow arrival.
        found.sort(key=lambda f: (uids.get(f[0], 1 << 62), f[3].st_mtime, f[0]))
        keywords: dict[str, list[str]] = data.setdefault("keywords", {})  # type: ignore[assignment]
        changed = False
        result: list[StoredMessage] = []
        present = set()
        for key, sub, info, st in found:
            present.add(key)
            if key not in uids:
                uids[key] = uidnext
                uidnext += 1
                changed = True
            letters = {LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS}
            flags = frozenset(letters.union(keywords.get(key, ())))
            result.append(StoredMessage(key, uids[key], st.st_size, flags, sub, st.st_mtime))
        for gone in set(uids) - present:
            del uids[gone]
            keywords.pop(gone, None)
            changed = True
        if changed:
            data["uids"] = uids
            data["uidnext"] = uidnext
            self._save_uids(data)
        result.sort(key=lambda m: m.uid)
        return result

    # -- reading and changing ---------------------------------------------
    def _file(self, key: str) -> Path:
        for sub in ("new", "cur"):
            d = self.path / sub
            for name in os.listdir(d):
                if name == key or name.startswith(key + ":2,"):
                    return d / name
        raise KeyError(key)

    def read(self, key: str) -> bytes:
        return read_message(self._file(key))

    def files(self) -> dict[str, Path]:
        """Every message's current file by key: one directory listing for many reads."""
        out: dict[str, Path] = {}
        for sub in ("new", "cur"):
            d = self.path / sub
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(d):
                    if not name.startswith("."):
                        out[name.partition(":2,")[0]] = d / name
        return out

    def set_flags(
        self, key: str, flags: frozenset[str] | set[str], was: StoredMessage | None = None
    ) -> str:
        """Store the flags in the file name (moving it to cur/); returns the new relative path.

        `was`: the message as last listed. Its file is tried first (no listing of the
        folder), and the index is left alone when its keywords stay the same, so that
        taking 1,000 messages out of new/ costs 1,000 renames and nothing more."""
        src = self.path / was.relpath if was is not None else None
        if src is None or not src.exists():
            src = self._file(key)
        letters = "".join(sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS))
        dst = self.path / "cur" / f"{key}:2,{letters}"
        if src != dst:
            os.replace(src, dst)
        words = {f for f in flags if not f.startswith("\\")}
        if was is None or words != {f for f in was.flags if not f.startswith("\\")}:
            self.store_keywords(key, flags)
        return f"cur/{dst.name}"

    def store_keywords(self, key: str, flags: frozenset[str] | set[str]) -> None:
        """Keywords go in the folder's index (durably), system flags in the file name."""
        words = sorted(f for f in flags if not f.startswith("\\"))
        with _uid_lock(self.path):
            data = self._load_uids()
            stored: dict[str, list[str]] = data.setdefault("keywords", {})  # type: ignore[assignment]
            if stored.get(key, []) == words:
                return
            if words:
                stored[key] = words
            else:
                del stored[key]
            self._save_uids(data)

    def remove(self, keys: list[str]) -> list[str]:
        """Delete messages; returns the relative paths that were removed."""
        removed = []
        for key in keys:
            try:
                f = self._file(key)
            except KeyError:
                continue
            f.unlink()
            removed.append(f"{f.parent.name}/{f.name}")
        if removed:
            fsync_dir(self.path / "cur")
            fsync_dir(self.path / "new")
        return removed

    def add(
        self,
        data: bytes,
        *,
        host: str = "localhost",
        flags: frozenset[str] = frozenset(),
        internaldate: float | None = None,
    ) -> StoredMessage:
        """Write a message durably and return it with its new UID."""
        key = self.write(data, host=host, flags=flags, internaldate=internaldate)
        self.store_keywords(key, flags)
        return self.find(key)

    def write(
        self,
        data: bytes,
        *,
        host: str = "localhost",
        flags: frozenset[str] = frozenset(),
        internaldate: float | None = None,
    ) -> str:
        """tmp/, fsync, rename into new/ (or cur/ with flags); returns the unique name.

        Only files with unique names are touched (no UID bookkeeping), so this slow,
        fsync-bound part may run in a worker thread while the event loop goes on.
        """
        name = _unique_name(host)
        if flags:
            letters = "".join(sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS))
            final = self.path / "cur" / f"{name}:2,{letters}"
        else:
            final = self.path / "new" / name
        write_durably(self.path / "tmp" / name, final, data, mtime=internaldate)
        return name

    async def write_async(self, data: bytes, *, host: str = "localhost") -> str:
        """`write` of a new, unflagged message through the process's group commit; its
        folder index record is appended in the same writer thread, off the loop."""
        name = _unique_name(host)
        folder = self.path

        def index(_tmp: Path) -> None:
            # Before the rename: a record for a file that never appears is harmless,
            # and a crash after the rename but before this is repaired on first read.
            try:
                record_delivery(folder, name, data)
            except Exception:  # the delivery must not fail for its cache entry
                log.exception("folder index: no record for %s", name)

        await COMMITS.write(self.path / "tmp" / name, self.path / "new" / name, data, index)
        return name

    def find(self, key: str) -> StoredMessage:
        for m in self.messages():
            if m.key == key:
                return m
        raise KeyError(key)

    def listing(self) -> list[str]:
        """Relative paths of the files in new/ and cur/, for showing the mailbox on screen."""
        out = []
        for sub in ("new", "cur"):
            d = self.path / sub
            if d.is_dir():
                out.extend(f"{sub}/{n}" for n in sorted(os.listdir(d)) if not n.startswith("."))
        return out


class MailStore:
    """All accounts' Maildirs below one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname() or "localhost"
        self._ensured: set[str] = set()
        self.listings = Listings()

    def account_path(self, address: str) -> Path:
        safe = address.lower().replace("/", "_")
        return self.root / safe

    def ensure_account(self, address: str) -> None:
        if address.lower() in self._ensured:
            return  # checked once per process: a delivery should not list folders
        md = mailbox.Maildir(self.account_path(address), create=True)
        existing = set(md.list_folders())
        for name in FOLDERS[1:]:
            if name not in existing:
                md.add_folder(name)
        self._ensured.add(address.lower())

    def folder_names(self, address: str) -> list[str]:
        md = mailbox.Maildir(self.account_path(address), create=True)
        return ["INBOX", *sorted(md.list_folders())]

    def folder_path(self, address: str, name: str = "INBOX") -> Path:
        """Where a folder is (or would be), without looking at the disk."""
        base = self.account_path(address)
        return base if name.upper() == "INBOX" else base / f".{name}"

    def folder(self, address: str, name: str = "INBOX") -> Folder:
        base = self.account_path(address)
        if name.upper() == "INBOX":
            return Folder("INBOX", base, listings=self.listings)
        path = base / f".{name}"
        if not path.is_dir():
            raise KeyError(name)
        return Folder(name, path, listings=self.listings)

    def create_folder(self, address: str, name: str) -> Folder:
        """A new Maildir++ folder, or FileExistsError. Built under the account's tmp/ and
        renamed into place, so the name appears whole (cur/, new/, tmp/ and the
        `maildirfolder` mark) or not at all, and two sessions creating it at once get
        one success and one FileExistsError (rename(2) will not replace a folder that
        has contents), never two successes."""
        import shutil  # as in delete_folder: rarely needed, so not at every start

        base = self.account_path(address)
        mailbox.Maildir(base, create=True)  # the account itself, on first use
        target = base / f".{name}"
        if target.exists():
            raise FileExistsError(errno.EEXIST, "Mailbox already exists", str(target))
        build = base / "tmp" / f"mailflow-new.{_unique_name(self.host)}"
        for sub in ("", "cur", "new", "tmp"):
            os.mkdir(build / sub, 0o700)
        os.close(os.open(build / "maildirfolder", os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            os.rename(build, target)
        except OSError as exc:
            shutil.rmtree(build, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(errno.EEXIST, "Mailbox already exists", str(target)) from exc
            raise
        return self.folder(address, name)

    def delete_folder(self, address: str, name: str) -> None:
        """Gone from every listing at once (one rename into the account's tmp/, where
        Maildir readers never look), then removed; a failure while removing leaves
        only files nobody lists."""
        import shutil

        base = self.account_path(address)
        doomed = base / "tmp" / f"mailflow-deleted.{_unique_name(self.host)}"
        os.replace(base / f".{name}", doomed)
        shutil.rmtree(doomed)

    def rename_folder(self, address: str, old: str, new: str) -> None:
        base = self.account_path(address)
        os.replace(base / f".{old}", base / f".{new}")

    def deliver(self, address: str, data: bytes, folder: str = "INBOX") -> StoredMessage:
        self.ensure_account(address)
        box = self.folder(address, folder)
        stored = box.add(data, host=self.host)
        try:
            record_delivery(box.path, stored.key, data)
        except Exception:  # rebuilt from the file on first read
            log.exception("folder index: no record for %s", stored.key)
        return stored

    async def deliver_async(self, address: str, data: bytes, folder: str = "INBOX") -> str:
        """Write a delivery through the group commit; returns its relative path.

        No folder scan here: UIDs are given when a reader next lists the folder (as
        Dovecot's uidlist does), so a delivery costs the same in a full mailbox."""
        self.ensure_account(address)
        box = self.folder(address, folder)
        name = await box.write_async(data, host=self.host)
        return f"new/{name}"

"""The folder index: per Maildir folder, a summary of every message (sizes, the header
fields clients list mail by, ENVELOPE and BODYSTRUCTURE), so that header FETCH, STATUS
SIZE, header SEARCH and POP3's LIST never open a message file. Dovecot keeps the same
in dovecot.index.cache.

UIDs, UIDVALIDITY and keywords stay in `mailflow-uids.json` and system flags in the
file names (mailstore.py); internal dates are the files' mtimes, listed with the
folder. What is kept here is only what never changes for a given file name, so a
record can be missing but never wrong:

- `mailflow-index`: a snapshot, written whole with `write_durably` (tmp, fsync,
  rename, directory fsync), so it is the old one or the new one after a crash;
- `mailflow-index.log`: records appended since, one `os.write` each (O_APPEND: two
  processes, the MDA and the IMAP server, may append at once). Each line carries a
  CRC-32, so a line torn by a crash (or zero-filled by the file system) is skipped.

Delivery appends the new message's record (in the MDA's writer thread). A record
that is missing anyway — the crash fell between the message's rename and the append,
the index was deleted, mail came from elsewhere — is rebuilt from the message file
the first time someone asks for it, off the event loop, and appended. When the log
holds more than COMPACT_AT records the lot is written as a new snapshot (dropping
expunged messages' records) and the log removed. A record lost in that race with a
concurrent append is rebuilt the same way: a cost, never a wrong answer.

Everything here does file I/O: call it from a worker thread, never the event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.protocols.imap.summary import Summary, summarize
from app.world.durable import write_durably

SNAPSHOT = "mailflow-index"
JOURNAL = "mailflow-index.log"
MAGIC = b"mailflow-index 1\n"
COMPACT_AT = 512  # log records before the next snapshot
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

# How many message files were opened for reading, process-wide (tests and the
# benchmark check that header FETCH leaves this alone).
message_reads = 0
_reads_lock = threading.Lock()


def read_message(path: Path) -> bytes:
    """Read one message file (the only way the IMAP/POP3 adapters and the index do)."""
    global message_reads
    with _reads_lock:
        message_reads += 1
    return path.read_bytes()


# -- records on disk -----------------------------------------------------------------
def _text(data: bytes) -> str:
    return data.decode("latin-1")  # 1:1, so any octets survive JSON


def encode(s: Summary) -> bytes:
    body = json.dumps(
        [
            s.key,
            s.size,
            s.pop3_size,
            [[name, _text(lines)] for name, lines in s.fields],
            _text(s.envelope),
            _text(s.body),
            _text(s.bodystructure),
        ],
        separators=(",", ":"),
    ).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> Summary | None:
    """One record line (without its newline), or None when torn or corrupt."""
    crc, _, body = line.partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        key, size, pop3_size, fields, env, body_s, bs = json.loads(body)
        return Summary(
            key=key,
            size=int(size),
            pop3_size=int(pop3_size),
            fields=tuple((n, v.encode("latin-1")) for n, v in fields),
            envelope=env.encode("latin-1"),
            body=body_s.encode("latin-1"),
            bodystructure=bs.encode("latin-1"),
        )
    except (ValueError, TypeError, UnicodeError):
        return None


def _records(data: bytes) -> Iterable[Summary]:
    for line in data.split(b"\n"):
        if line:
            record = decode(line)
            if record is not None:
                yield record


def append_records(folder: Path, records: list[Summary]) -> None:
    """Append to the folder's log in one write (atomic beside other appenders)."""
    if not records:
        return
    fd = os.open(folder / JOURNAL, _APPEND, 0o666)
    try:
        os.write(fd, b"".join(encode(r) for r in records))
    finally:
        os.close(fd)


def record_delivery(folder: Path, key: str, data: bytes) -> None:
    """The MDA wrote `data` as `key` into `folder`: note its summary (in its writer thread)."""
    append_records(folder, [summarize(key, data)])


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# -- one folder in memory ----------------------------------------------------------------
@dataclass
class _Loaded:
    snapshot: tuple[int, int, int] | None = None
    journal_ino: int | None = None
    journal_offset: int = 0
    journal_records: int = 0
    records: dict[str, Summary] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FolderIndexes:
    """The index of every folder this process has read, kept in memory and caught up
    with the files on each use (one stat of each, then only the log's new tail)."""

    def __init__(self, max_folders: int = 256) -> None:
        self._folders: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self.max_folders = max_folders
        self.rebuilt = 0  # records built from message files (for the tests)

    def _entry(self, folder: Path) -> _Loaded:
        key = os.path.realpath(folder)
        with self._lock:
            entry = self._folders.get(key)
            if entry is None:
                if len(self._folders) >= self.max_folders:
                    self._folders.pop(next(iter(self._folders)))
                entry = self._folders[key] = _Loaded()
            return entry

    def forget(self) -> None:
        """Drop what is in memory (as a restarted process would have nothing)."""
        with self._lock:
            self._folders.clear()

    def summaries(
        self, folder: Path, keys: Iterable[str], files: dict[str, Path] | None = None
    ) -> dict[str, Summary]:
        """The records of `keys`; missing ones are built from their files (`files`: the
        folder's current file per key, listed here when not given) and appended. A key
        whose file is gone is left out."""
        entry = self._entry(folder)
        with entry.lock:
            self._catch_up(folder, entry)
            keys = list(keys)
            missing = [k for k in keys if k not in entry.records]
            if missing:
                files = files if files is not None else list_files(folder)
                built = []
                for key in missing:
                    path = files.get(key)
                    if path is None:
                        continue
                    try:
                        data = read_message(path)
                    except FileNotFoundError:  # flags changed meanwhile: list again
                        path = list_files(folder).get(key)
                        if path is None:
                            continue
                        try:
                            data = read_message(path)
                        except FileNotFoundError:
                            continue
                    built.append(summarize(key, data))
                    time.sleep(0)  # let the event loop have the GIL between messages
                self.rebuilt += len(built)
                append_records(folder, built)
                for record in built:
                    entry.records[record.key] = record
                entry.journal_records += len(built)
            # Deliveries append without ever compacting: whoever reads does it.
            if entry.records and (entry.snapshot is None or entry.journal_records > COMPACT_AT):
                present = files if files is not None else list_files(folder)
                self._compact(folder, entry, set(present))
            return {k: entry.records[k] for k in keys if k in entry.records}

    def _catch_up(self, folder: Path, entry: _Loaded) -> None:
        snapshot = _stat(folder / SNAPSHOT)
        journal = _stat(folder / JOURNAL)
        if snapshot != entry.snapshot or (
            journal is not None and entry.journal_ino not in (None, journal[0])
        ):
            # A new snapshot (ours or another process's) or a new log: read both afresh.
            entry.records.clear()
            entry.snapshot, entry.journal_ino = snapshot, None
            entry.journal_offset = entry.journal_records = 0
            if snapshot is not None:
                with contextlib.suppress(FileNotFoundError):
                    data = (folder / SNAPSHOT).read_bytes()
                    if data.startswith(MAGIC):
                        for record in _records(data[len(MAGIC) :]):
                            entry.records[record.key] = record
        if journal is None:
            entry.journal_ino, entry.journal_offset, entry.journal_records = None, 0, 0
            return
        if journal[2] <= entry.journal_offset and entry.journal_ino == journal[0]:
            return
        try:
            with open(folder / JOURNAL, "rb") as f:
                f.seek(entry.journal_offset)
                tail = f.read()
        except FileNotFoundError:
            return
        end = tail.rfind(b"\n") + 1  # a line still being written waits for its newline
        for record in _records(tail[:end]):
            entry.records[record.key] = record
            entry.journal_records += 1
        entry.journal_ino = journal[0]
        entry.journal_offset += end

    def _compact(self, folder: Path, entry: _Loaded, present: set[str]) -> None:
        kept = [r for k, r in entry.records.items() if k in present]
        data = MAGIC + b"".join(encode(r) for r in kept)
        write_durably(folder / (SNAPSHOT + ".tmp"), folder / SNAPSHOT, data)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / JOURNAL)
        entry.records = {r.key: r for r in kept}
        entry.snapshot = _stat(folder / SNAPSHOT)
        entry.journal_ino, entry.journal_offset, entry.journal_records = None, 0, 0


def list_files(folder: Path) -> dict[str, Path]:
    """Every message's current file by key (new/ and cur/)."""
    out: dict[str, Path] = {}
    for sub in ("new", "cur"):
        d = folder / sub
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(d):
                if not name.startswith("."):
                    out[name.partition(":2,")[0]] = d / name
    return out


INDEXES = FolderIndexes()  # the process's one in-memory copy

"""A mail queue on disk: one file per mail, a JSON envelope line and then the message.

Written with fsync before the server says 250, so a crash right after the reply
loses nothing (RFC 5321 §6.1: once accepted, the server is responsible for the mail).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.world.durable import COMMITS, write_durably


@dataclass(frozen=True, slots=True)
class QueuedMail:
    qid: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    body: str = ""  # the incoming MAIL's BODY= (RFC 6152), "" for none (7BIT)


def new_queue_id() -> str:
    return secrets.token_hex(5).upper()


def _entry(mail_from: str, rcpt_tos: list[str], data: bytes, body: str = "") -> bytes:
    fields: dict[str, object] = {"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}
    if body:
        fields["body"] = body
    return json.dumps(fields).encode() + b"\n" + data


class Spool:
    """One file per queued mail: a JSON envelope line, then the message bytes.

    One file means one durable write per mail; the rename into place makes it appear
    whole or not at all. Writing touches only unique names, so puts may run in worker
    threads, and more than one process may write to the same queue.

    Files are recycled rather than deleted: a delivered entry is renamed to a hidden
    `.free-…` name, and the next put claims one of those (by renaming it, so two
    writers never claim the same file) and writes over it. Creating and deleting a file
    per mail made the kernel's inode allocator the largest cost of the lab's pipeline
    on ext4 without a journal, which skips recently freed inodes one by one; queue
    managers that reuse their files (PostgreSQL's WAL segments, for one) avoid the same.
    """

    SUFFIX = ".mail"
    FREE = ".free-"
    KEEP_FREE = 64  # free files kept per queue; more (after a burst) are deleted
    RESCAN_SECONDS = 1.0  # how often an empty free list may look for other writers' files

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._free: list[str] = []
        self._free_lock = threading.Lock()
        self._scanned = 0.0

    def put(self, mail_from: str, rcpt_tos: list[str], data: bytes, qid: str | None = None) -> str:
        qid = qid or new_queue_id()
        tmp, final = self._paths(qid)
        self._claim(tmp)
        write_durably(tmp, final, _entry(mail_from, rcpt_tos, data))
        return qid

    async def put_async(self, mail: QueuedMail) -> None:
        """`put` through the process's group commit: the event loop goes on meanwhile."""
        entry = _entry(mail.mail_from, list(mail.rcpt_tos), mail.data, mail.body)
        await COMMITS.write(*self._paths(mail.qid), entry, self._claim)

    def _paths(self, qid: str) -> tuple[Path, Path]:
        # The temporary name is hidden: never listed as an entry.
        return self.dir / f".{qid}{self.SUFFIX}.tmp", self.dir / f"{qid}{self.SUFFIX}"

    def _claim(self, tmp: Path) -> None:
        """Make a free file `tmp` if there is one; otherwise `tmp` is created anew."""
        while True:
            with self._free_lock:
                if not self._free and time.monotonic() - self._scanned > self.RESCAN_SECONDS:
                    self._rescan()
                if not self._free:
                    return
                name = self._free.pop()
            try:
                os.rename(self.dir / name, tmp)
                return
            except FileNotFoundError:
                continue  # another process claimed it first

    def _rescan(self) -> None:
        # Free files another process (or an earlier run) left; caller holds the lock.
        self._scanned = time.monotonic()
        names = [e.name for e in os.scandir(self.dir) if e.name.startswith(self.FREE)]
        self._free = names[: self.KEEP_FREE]
        for extra in names[self.KEEP_FREE :]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / extra)

    def qids(self) -> list[str]:
        """Queued ids, oldest first, without reading any mail."""
        files = []
        for entry in os.scandir(self.dir):
            if entry.name.endswith(self.SUFFIX) and not entry.name.startswith("."):
                files.append((entry.stat().st_mtime, entry.name[: -len(self.SUFFIX)]))
        return [qid for _, qid in sorted(files)]

    def get(self, qid: str) -> QueuedMail | None:
        """One queued mail, or None when it was delivered and removed meanwhile."""
        try:
            raw = (self.dir / f"{qid}{self.SUFFIX}").read_bytes()
        except FileNotFoundError:
            return None
        head, _, data = raw.partition(b"\n")
        env = json.loads(head)
        return QueuedMail(qid, env["mail_from"], tuple(env["rcpt_tos"]), data, env.get("body", ""))

    def entries(self) -> list[QueuedMail]:
        return [m for m in map(self.get, self.qids()) if m is not None]

    def remove(self, qid: str) -> None:
        """Take a delivered entry out of the queue; its file is kept for reuse."""
        with self._free_lock:
            keep = len(self._free) < self.KEEP_FREE
        entry = self.dir / f"{qid}{self.SUFFIX}"
        try:
            if keep:
                os.rename(entry, self.dir / f"{self.FREE}{qid}")
            else:
                os.unlink(entry)
        except FileNotFoundError:
            return  # already gone: what the caller wanted
        if keep:
            with self._free_lock:
                self._free.append(f"{self.FREE}{qid}")

    async def remove_async(self, qid: str) -> None:
        # A rename can take longer than a whole SMTP reply; not on the event loop.
        await COMMITS.call(lambda: self.remove(qid))

    def __len__(self) -> int:
        return len(self.qids())

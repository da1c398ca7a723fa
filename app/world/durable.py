"""Durable file writes: temporary file, fsync, rename into place, fsync the directory.

A server may say 250 only once the mail is on disk (RFC 5321 §6.1), so every queue
entry and every Maildir delivery is written this way. `write_durably` does one write
in the calling thread. `GroupCommit` does them for an event loop: one thread per
process takes every write waiting at that moment and commits them as a batch (the
group commit of databases), so N mails arriving together cost one directory fsync per
directory instead of N, and no thread-pool hand-off each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("mailflow.durable")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# O_DSYNC: write() returns once the data and what is needed to read it back are on
# disk (as write + fdatasync would), in one call. Raw os calls, not open(): each call
# releases and retakes the GIL, and open() adds fstat, ioctl and lseek to every file.
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DSYNC | os.O_CLOEXEC


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, _FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_durably(tmp: Path, final: Path, data: bytes, *, mtime: float | None = None) -> None:
    """Write `data` to `tmp` synchronously, rename it to `final`, fsync final's directory.

    The rename makes the file appear whole or not at all; the directory fsync makes
    the rename itself survive a crash."""
    _write_synced(tmp, data)
    os.replace(tmp, final)
    if mtime is not None:
        os.utime(final, (mtime, mtime))
    fsync_dir(final.parent)


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    tmp: Path | None  # None: not a write; `action` is run instead
    final: Path | None = None
    data: bytes = b""
    prepare: Callable[[Path], None] | None = None  # e.g. turn a recycled file into tmp
    action: Callable[[], None] | None = None
    error: BaseException | None = field(default=None)


class GroupCommit:
    """One writer thread; each batch is written, fsynced file by file, renamed into place,
    and then each directory it touched is fsynced once. A job's future completes only
    after its directory's fsync, so a reply sent after `await write(...)` is as safe as
    with `write_durably`."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # how many commits, and how many jobs they held (for the tests)
        self.jobs = 0

    async def write(
        self, tmp: Path, final: Path, data: bytes, prepare: Callable[[Path], None] | None = None
    ) -> None:
        """Durably `data` at `final`; `prepare(tmp)` runs first in the writer thread."""
        await self._submit(tmp, final, data, prepare)

    async def call(self, action: Callable[[], None]) -> None:
        """Run a file operation that needs no fsync (removing a delivered queue entry:
        one that comes back after a crash is only sent again, which RFC 5321 §6.1
        allows) in the writer thread, off the event loop."""
        await self._submit(None, None, b"", None, action)

    def _submit(
        self,
        tmp: Path | None,
        final: Path | None,
        data: bytes,
        prepare: Callable[[Path], None] | None = None,
        action: Callable[[], None] | None = None,
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), tmp, final, data, prepare, action)
        self._jobs.put(job)
        if self._thread is None:
            self._start()
        return job.future

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            batch = [self._jobs.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._jobs.get_nowait())
            self.batches += 1
            self.jobs += len(batch)
            try:
                _commit(batch)
            except BaseException as exc:  # never leave a caller waiting
                log.exception("group commit failed")
                for job in batch:
                    job.error = job.error or exc
            _settle(batch)


def _commit(batch: list[_Job]) -> None:
    writes = [job for job in batch if job.tmp is not None]
    for job in writes:
        try:
            if job.prepare is not None:
                job.prepare(job.tmp)  # type: ignore[arg-type]
            _write_synced(job.tmp, job.data)  # type: ignore[arg-type]
        except OSError as exc:
            job.error = exc
    directories: dict[Path, list[_Job]] = {}
    for job in writes:
        if job.error is None:
            try:
                os.replace(job.tmp, job.final)  # type: ignore[arg-type]
                directories.setdefault(job.final.parent, []).append(job)  # type: ignore[union-attr]
            except OSError as exc:
                job.error = exc
        if job.error is not None:
            with contextlib.suppress(OSError):
                os.unlink(job.tmp)  # type: ignore[arg-type]
    for directory, jobs in directories.items():
        try:
            fsync_dir(directory)
        except OSError as exc:
            for job in jobs:
                job.error = exc
    for job in batch:
        if job.action is not None:
            try:
                job.action()
            except OSError as exc:
                job.error = exc


def _settle(batch: list[_Job]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in batch:
        by_loop.setdefault(job.loop, []).append(job)
    for loop, jobs in by_loop.items():
        # One wake-up of each waiting loop per batch, not one per job.
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_complete, jobs)


def _complete(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the caller gave up (cancelled)
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(None)


COMMITS = GroupCommit()  # the process's one writer thread, started on first use

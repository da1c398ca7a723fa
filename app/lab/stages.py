"""A queue stage: a worker that empties a spool when woken, and at least every so often.

Two in the lab process: the outbound relay stage (app/lab/world.py) and the inbound
LMTP stage behind the MX hops (app/lab/inner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from app.engines.relay import ClientPool, HopResult
from app.world.spool import QueuedMail, Spool

log = logging.getLogger("mailflow.lab")
RETRY_SECONDS = 30.0
PARALLEL_DELIVERIES = 16
# How long a graceful shutdown lets deliveries in flight finish, per stage. The lab's two
# stages drain one after the other, below the 10 s the web gives the lab process
# (app/lab/control.py), so a drain ends on its own before anyone kills the process.
DRAIN_SECONDS = 3.0


class Draining(Exception):
    """A delivery not yet begun when the stage began to drain: it stays queued."""


async def settle(spool: Spool, entry: QueuedMail, result: HopResult) -> None:
    """After one attempt: the entry leaves the queue once every recipient is decided
    (delivered or refused); otherwise it stays with only the deferred ones, so the
    retry never gives a second copy to a recipient already served (RFC 5321 §4.5.4.1,
    each recipient's reply is judged on its own)."""
    if not result.deferred:
        await spool.remove_async(entry.qid)
    elif len(result.deferred) < len(set(entry.rcpt_tos)):
        left = tuple(r for r in dict.fromkeys(entry.rcpt_tos) if r in result.deferred)
        await spool.put_async(replace(entry, rcpt_tos=left))  # replaces the file whole


def _unseen(spool: Spool, skip: frozenset[str]) -> list[QueuedMail]:
    """The queued mails not in `skip`, oldest first; only names are listed, and mails
    in `skip` (offered, or in flight) are not even read."""
    found = (spool.get(qid) for qid in spool.qids() if qid not in skip)
    return [entry for entry in found if entry is not None]


class Stage:
    """Several mails in flight at once, as an MTA runs parallel deliveries.

    A mail queued by this process is offered to the stage as it is (the queue file is
    the copy that survives a crash), so a busy queue is not listed and read back for
    every mail; the directory is listed at start, when asked (mail another process
    queued), and on the retry timer."""

    def __init__(self, pool: ClientPool) -> None:
        self.pool = pool
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(PARALLEL_DELIVERIES)
        self._in_flight: set[str] = set()
        self._offered: dict[Spool, list[QueuedMail]] = {}
        self._scan_requested = True  # the first run lists what a previous run left
        self._scanning = False
        self._running = False  # run() has begun (its process owns the queue)
        self.draining = False

    def offer(self, spool: Spool, entry: QueuedMail) -> None:
        self._offered.setdefault(spool, []).append(entry)
        self.wake.set()

    def rescan(self) -> None:
        self._scan_requested = True
        self.wake.set()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the parallel deliveries; none begins once the stage drains."""
        async with self.slots:
            if self.draining:
                raise Draining("shutting down")
            yield

    async def run(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._running = True
        while not self.draining:
            # While sessions are cached, wake often enough to QUIT the idle ones.
            wait = self.pool.idle_seconds if len(self.pool) else RETRY_SECONDS
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except TimeoutError:
                self._scan_requested = True  # the retry timer: deferred mail goes again
            self.wake.clear()
            if self.draining:
                break
            self._scanning, self._scan_requested = self._scan_requested, False
            try:
                await flush()
                await self.pool.expire()
            except Exception:  # a bad entry must not stop the queue for everyone
                log.exception("lab queue run failed")

    async def drain(self, worker: asyncio.Task[None], seconds: float = DRAIN_SECONDS) -> None:
        """Stop `worker` (the task running `run`) gracefully: no new delivery begins, and
        the ones in flight finish up to their queue clean-up, so a mail the next hop
        already answered 250 for is not sent again by the next run. Cancelled after
        `seconds` (a hop that hangs), and at once if the stage never began (still
        waiting for the queue lock): then nothing is in flight."""
        self.draining = True
        self.wake.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(worker), seconds)
        if self._running and not worker.done():
            log.warning("queue deliveries still in flight after %.0f s: cancelled", seconds)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    async def each(self, spool: Spool, job: Callable[[QueuedMail], Awaitable[None]]) -> None:
        # Entries taken by a run still in flight are skipped, not sent twice.
        entries = {e.qid: e for e in self._offered.pop(spool, [])}
        if self._scanning:
            # Listing and reading the queue is disk work: in a thread, not on the loop
            # that serves every listener (a deferred queue may hold thousands).
            skip = frozenset(entries) | frozenset(self._in_flight)
            for entry in await asyncio.to_thread(_unseen, spool, skip):
                entries.setdefault(entry.qid, entry)
            # Offered while the scan ran: taken now, so the next run cannot send again
            # what this run found on disk.
            entries.update((e.qid, e) for e in self._offered.pop(spool, []))
        todo = [e for qid, e in entries.items() if qid not in self._in_flight]
        self._in_flight.update(e.qid for e in todo)
        try:
            results = await asyncio.gather(*(job(e) for e in todo), return_exceptions=True)
        finally:
            self._in_flight.difference_update(e.qid for e in todo)
        for entry, outcome in zip(todo, results, strict=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, Draining):
                log.warning("queue entry %s stays queued: %s", entry.qid, outcome)

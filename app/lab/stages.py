"""A queue stage: a worker that empties a spool when woken, and at least every so often.

Shared by the lab's two processes: the outbound relay stage in the app, the inbound
LMTP stage in the internal process (app/lab/inner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from app.engines.relay import ClientPool
from app.world.spool import QueuedMail, Spool

log = logging.getLogger("mailflow.lab")
RETRY_SECONDS = 30.0
PARALLEL_DELIVERIES = 16


class Stage:
    """Several mails in flight at once, as an MTA runs parallel deliveries."""

    def __init__(self, pool: ClientPool) -> None:
        self.pool = pool
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(PARALLEL_DELIVERIES)
        self._in_flight: set[str] = set()

    async def run(self, flush: Callable[[], Awaitable[None]]) -> None:
        while True:
            # While sessions are cached, wake often enough to QUIT the idle ones.
            wait = self.pool.idle_seconds if len(self.pool) else RETRY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)
            self.wake.clear()
            try:
                await flush()
                await self.pool.expire()
            except Exception:  # a bad entry must not stop the queue for everyone
                log.exception("lab queue run failed")

    async def each(self, spool: Spool, job: Callable[[QueuedMail], Awaitable[None]]) -> None:
        # Entries taken by a run still in flight are skipped, not sent twice.
        # Only names are listed; mails already in flight are not even read again.
        fresh = [qid for qid in spool.qids() if qid not in self._in_flight]
        entries = [m for m in map(spool.get, fresh) if m is not None]
        self._in_flight.update(e.qid for e in entries)
        try:
            results = await asyncio.gather(*(job(e) for e in entries), return_exceptions=True)
        finally:
            self._in_flight.difference_update(e.qid for e in entries)
        for entry, outcome in zip(entries, results, strict=True):
            if isinstance(outcome, Exception):
                log.warning("queue entry %s stays queued: %s", entry.qid, outcome)

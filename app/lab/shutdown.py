"""A graceful stop of a lab process: stdin EOF (its parent is gone) or SIGTERM.

Both end the process the same way: no new work, deliveries in flight finish up to
their queue clean-up (Stage.drain, app/lab/stages.py), then exit. A kill -9 skips all
of this; the queues still deliver at least once (docs/architecture.md, "Durability").
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable


class Stop:
    """Made before the process announces its ports, so a SIGTERM sent the moment it
    does (or during start-up) is never missed, nor kills the process outright."""

    def __init__(self) -> None:
        self.term = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.term.set)

    async def until(self, reading: Awaitable[None]) -> None:
        """Run `reading` (the loop over stdin, which ends at EOF) until it ends or
        SIGTERM arrives, whichever comes first."""
        reader = asyncio.ensure_future(reading)
        waiter = asyncio.ensure_future(self.term.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, waiter):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

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


async def until_stopped(reading: Awaitable[None]) -> None:
    """Run `reading` (the loop over stdin, which ends at EOF) until it ends or SIGTERM
    arrives, whichever comes first."""
    loop = asyncio.get_running_loop()
    term = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, term.set)
    reader = asyncio.ensure_future(reading)
    waiter = asyncio.ensure_future(term.wait())
    try:
        await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        for task in (reader, waiter):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

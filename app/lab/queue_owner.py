"""One process at a time works the lab's queues.

When the web process dies (kill -9), its lab process sees its stdin close and shuts
down; but a new web process may start a new lab process before the old one has
finished. Two stages listing the same spool would both deliver the same file, and a
mail caught in both hops gave three copies. So the lab process holds an exclusive
`flock` on a file in the queue directory while its stages run: the new process starts
its listeners at once (accepting mail only writes new files) and delivers once the old
process has exited, which drops its lock even when killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("mailflow.lab")


async def _lock(path: Path) -> int:
    """An fd holding an exclusive flock on `path`; waits for the holder to let go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    log.warning("waiting for the previous lab process to finish with %s", path.parent)
    loop = asyncio.get_running_loop()
    got: asyncio.Future[int] = loop.create_future()

    def hand_over() -> None:  # on the loop
        if got.cancelled():
            os.close(fd)  # nobody wants it any more: the lock goes with the fd
        else:
            got.set_result(fd)

    def wait() -> None:
        # A blocking flock in a thread of its own: the kernel wakes it when the other
        # process lets go or dies. Daemon: it never holds up this process's exit.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            loop.call_soon_threadsafe(hand_over)
        except RuntimeError:  # the loop is closed
            os.close(fd)

    threading.Thread(target=wait, name="queue-owner", daemon=True).start()
    return await got


async def run_owned(path: Path, run: Callable[[], Awaitable[None]]) -> None:
    """`run()` (the stages' work) while holding the lock on `path`."""
    fd = await _lock(path)
    try:
        await run()
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)

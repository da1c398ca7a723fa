"""How a dead lab process is started again by the web (app/lab/control.py): at once
after a long life, backing off up to MAX_DELAY when it dies again soon after each start."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("mailflow.lab")
LONG_LIFE = 10.0  # seconds: a child that lived this long is restarted at once
# The longest pause between tries, as the queue's retry (app/lab/stages.py); not imported
# from there, since the web imports this module and must not import the engines.
MAX_DELAY = 30.0


class Child(Protocol):
    """What a restart needs of the dead process (an asyncio one, or an adopted one)."""

    pid: int

    async def wait(self) -> int: ...


class Restarts:
    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.1
        self.started = 0.0

    def mark_started(self) -> None:
        self.started = time.monotonic()

    async def after(
        self,
        dead: Child,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        closing: Callable[[], bool],
    ) -> bool:
        """Wait for `dead` to be reaped, then start a new one until one starts; True
        when it is running, False when the owner closed meanwhile."""
        code = await dead.wait()
        log.warning("%s %s exited (%s); restarting it", self.what, dead.pid, code)
        lived = time.monotonic() - self.started
        self.delay = 0.1 if lived > LONG_LIFE else min(self.delay * 2, MAX_DELAY)
        while not closing():
            await asyncio.sleep(self.delay)
            if closing():
                return False
            try:
                await start()
            except Exception:
                log.exception("restarting %s failed", self.what)
                self.delay = min(self.delay * 2, MAX_DELAY)
                continue
            if closing():  # close() ran while it was starting
                await stop()
                return False
            return True
        return False

"""Waiting on the condition that says "done", in one place.

Where the product offers no event to wait on (a file the MDA writes, a server another
thread or process starts), the tests poll the condition itself. The bound is a hang
guard, not a guess at how long the work takes: the wait ends the moment the condition
holds, and the bound is generous (a loaded 2-core machine), so it only turns a hang
into a failure with a message.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

HANG_GUARD = 60.0  # seconds; a failure bound, never reached by a passing test
POLL = 0.02  # how often the condition is looked at

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, bound: float = HANG_GUARD) -> T:
    """Poll `check` until it returns something true, and return that."""
    deadline = time.monotonic() + bound
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard ({bound:.0f} s): still waiting for {what}")
        time.sleep(POLL)
    return result


async def wait_until_async(
    check: Callable[[], T | Awaitable[T]], what: str, bound: float = HANG_GUARD
) -> T:
    """`wait_until` inside an event loop (the loop goes on serving while it waits)."""
    deadline = time.monotonic() + bound
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard ({bound:.0f} s): still waiting for {what}")
        await asyncio.sleep(POLL)


def wait_started(server: Any, thread: threading.Thread) -> int:
    """A uvicorn.Server running in `thread`: its port once it serves."""

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the app did not start")
        return bool(server.started)

    wait_until(started, "the app to start")
    return int(server.servers[0].sockets[0].getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """`python -m app` in `proc`: until GET `url` answers 200 (or the process exits)."""

    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"the app exited ({proc.returncode}): {out}")
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, f"{url} to answer")

"""What runs inside the recording worker process (never in the web process).

The web process submits these functions to a `ProcessPoolExecutor` (spawn context, see
app/web/record_worker.py). This module imports nothing heavy at the top: the web
process imports it only to name the functions, and the engines, the runner and the
scenario actions are imported in the worker on its first job.

The worker keeps one event loop for its whole life, so connections a run leaves
closing finish in the background of the next job instead of being cancelled.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.scenarios.runner import Recording

NICE = 10  # scenario runs yield the CPU to the web process's requests

# The listener names that must greet, with the first bytes of their greeting.
GREETINGS = {
    "submission": b"220",
    "mx-b": b"220",
    "lmtp-b": b"220",
    "pop3-b": b"+OK",
    "imap-b": b"* OK",
}
GREET_TIMEOUT = 3.0

_state: dict[str, Any] = {}


def init(tls_dir: str, runs_dir: str, nice: int = NICE) -> None:
    """Executor initializer: remember where to work and how nice to be."""
    _state["tls_dir"] = Path(tls_dir)
    _state["runs_dir"] = Path(runs_dir)
    _state["nice"] = nice
    _exit_with_parent()


def _exit_with_parent() -> None:
    """End this process when the web process is gone, even if it was killed.

    The executor's queues keep a pipe end open in here, so a worker would otherwise
    wait for jobs forever after a `kill -9` of the web process.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _be_nice() -> None:
    # Lowered on the first scenario run, not at start: the first job is the start-up
    # health probe, which /healthz (and so a cold start) waits for. A process can only
    # lower its own priority, so from then on everything here yields to the web.
    nice = _state.pop("nice", 0)
    if nice:
        os.nice(nice)


def _loop() -> asyncio.AbstractEventLoop:
    loop = _state.get("loop")
    if loop is None:
        loop = _state["loop"] = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def _tls() -> Any:
    if "tls" not in _state:
        from app.engines.tls import LabTLS

        _state["tls"] = LabTLS.load(_state["tls_dir"])
    return _state["tls"]


def record(slug: str, lang: str) -> Recording:
    """Run one scenario for real and return its recording (pickled back to the web)."""
    from app.scenarios.model import load_all
    from app.scenarios.runner import run_scenario

    _be_nice()
    if "scenarios" not in _state:
        _state["scenarios"] = load_all()
    scenario = _state["scenarios"][slug]
    return _loop().run_until_complete(run_scenario(scenario, _tls(), _state["runs_dir"], lang))


def probe() -> dict[str, str]:
    """Start a default world, connect to each listener, expect its greeting, tear down."""
    return _loop().run_until_complete(_probe())


async def _probe() -> dict[str, str]:
    from app.sandbox import Sandbox

    runs_dir: Path = _state["runs_dir"]
    runs_dir.mkdir(parents=True, exist_ok=True)
    world = Sandbox(Path(tempfile.mkdtemp(prefix="health-", dir=runs_dir)), _tls(), sink=_discard)
    result: dict[str, str] = {}
    try:
        await world.start()
        for name, greeting in GREETINGS.items():
            result[name] = await _greets(world.ports[name], greeting)
    except Exception as exc:
        result["start"] = f"{exc.__class__.__name__}: {exc}"
    finally:
        await world.close()
        world.discard()
    return result


def _discard(event: object) -> None:
    return None


async def _greets(port: int, expected: bytes) -> str:
    from app.world.world import LOOPBACK

    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(LOOPBACK, port), GREET_TIMEOUT
        )
        line = await asyncio.wait_for(reader.readline(), GREET_TIMEOUT)
        writer.close()
        return "ok" if line.startswith(expected) else f"unexpected greeting {line[:40]!r}"
    except (OSError, TimeoutError) as exc:
        return f"{exc.__class__.__name__}: {exc}"


def pid() -> int:
    return os.getpid()

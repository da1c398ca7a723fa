"""How the web's child process, the lab (`app.lab.process`), is started and run.

A parent spawns `python -m <module>`, writes the child's configuration as one JSON line on
its stdin and reads the child's first stdout line (its ports, or an error) within a time
limit; a child that does not answer in time is killed. The child runs `run_main`: Ctrl-C is
left to the parent (it reaches the whole process group), and the child stops when its stdin
closes. Imports nothing heavy: the web process imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent.parent


class Started(Protocol):
    """What `configure` needs of a started child (an asyncio one, or an adopted one)."""

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    returncode: int | None

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


async def spawn(module: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


def shared_config(data_dir: Path, tls_dir: str | Path, accounts: Any) -> dict[str, object]:
    """The part of the lab's configuration the web's settings give: where the data and
    the certificates are, and the accounts."""
    return {
        "data_dir": str(data_dir.resolve()),
        "tls_dir": str(Path(tls_dir).resolve()),
        "passwords": accounts.passwords,
        "domains": sorted(accounts.domains),
    }


async def configure(proc: Started, config: dict[str, object], seconds: float) -> dict[str, Any]:
    """Hand `proc` its configuration and return its first line (`{}` if it closed stdout
    without one); killed and waited for if that takes longer than `seconds`."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(config).encode() + b"\n")
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), seconds)
        return json.loads(first) if first else {}
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


def run_main(main: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """A child's `__main__`: Ctrl-C ignored (the parent's stop reaches it through stdin),
    warnings to stderr (stdout carries the frames), exit with `main`'s status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    with contextlib.suppress(BrokenPipeError):  # the parent is gone: nobody to tell
        raise SystemExit(_runner()(main()))


def _runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """uvloop where it is installed (not on Windows), as the web does (serving.py): its
    C event loop and TLS layer cost the lab's processes less CPU per mail than asyncio's
    pure-Python ones (docs/benchmarks.md, "Lab pipeline")."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run

"""The engine health probe: start a default scenario world, have each listener greet,
tear it all down. "Are the protocol engines able to serve?", checked by running them.

Run where the engines already live, never in the web process: in the lab process when
the lab is on (its engines are imported and it is up anyway, so `/healthz` needs no
other process; about 10 ms of CPU there), else in the recording worker. The world's
events go nowhere: a probe never shows in the lab's live view.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.engines.tls import LabTLS

# The listener names that must greet, with the first bytes of their greeting.
GREETINGS = {
    "submission": b"220",
    "mx-b": b"220",
    "lmtp-b": b"220",
    "pop3-b": b"+OK",
    "imap-b": b"* OK",
}
GREET_TIMEOUT = 3.0


async def probe(runs_dir: Path, tls: LabTLS) -> dict[str, str]:
    """{listener name: "ok" or what went wrong}; "start" if the world did not start."""
    from app.sandbox import Sandbox

    def make_world() -> Sandbox:
        runs_dir.mkdir(parents=True, exist_ok=True)
        return Sandbox(Path(tempfile.mkdtemp(prefix="health-", dir=runs_dir)), tls, sink=_discard)

    # The disk steps run off the loop: in the lab process that loop serves real mail
    # programs, which must not wait for a directory to be made or removed.
    world = await asyncio.to_thread(make_world)
    result: dict[str, str] = {}
    try:
        await world.start()
        for name, greeting in GREETINGS.items():
            result[name] = await _greets(world.ports[name], greeting)
    except Exception as exc:
        result["start"] = f"{exc.__class__.__name__}: {exc}"
    finally:
        await world.close()
        await asyncio.to_thread(world.discard)
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

"""Health: are the protocol engines able to serve? Checked by really starting them.

A world is started, each listener is connected to and must greet, then all of it is
torn down. The answer is cached briefly so a busy health checker costs little.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.engines.tls import LabTLS
from app.sandbox import Sandbox
from app.world.world import LOOPBACK

CACHE_SECONDS = 10.0
GREETINGS = {
    "submission": b"220",
    "mx-b": b"220",
    "lmtp-b": b"220",
    "pop3-b": b"+OK",
    "imap-b": b"* OK",
}


@dataclass
class EngineHealth:
    tls: LabTLS
    runs_dir: Path
    checked_at: float = 0.0
    result: dict[str, str] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def ok(self) -> bool:
        return bool(self.result) and all(v == "ok" for v in self.result.values())

    async def check(self) -> dict[str, str]:
        async with self._lock:
            if time.monotonic() - self.checked_at < CACHE_SECONDS and self.result:
                return self.result
            self.result = await self._probe()
            self.checked_at = time.monotonic()
            return self.result

    async def _probe(self) -> dict[str, str]:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        world = Sandbox(
            Path(tempfile.mkdtemp(prefix="health-", dir=self.runs_dir)),
            self.tls,
            sink=lambda event: None,
        )
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


async def _greets(port: int, expected: bytes) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), 3)
        line = await asyncio.wait_for(reader.readline(), 3)
        writer.close()
        return "ok" if line.startswith(expected) else f"unexpected greeting {line[:40]!r}"
    except (OSError, TimeoutError) as exc:
        return f"{exc.__class__.__name__}: {exc}"

"""Health: are the protocol engines able to serve? Checked by really starting them.

The probe runs in the worker process (app/scenarios/worker.py: `probe`), like every
scenario run: a default world is started, each listener is connected to and must greet,
then all of it is torn down. The answer is cached briefly so a busy health checker
costs little; the probe goes ahead of the pool's background refills.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from app.scenarios import worker
from app.web.record_worker import FOREGROUND, RecordWorker

CACHE_SECONDS = 10.0


@dataclass
class EngineHealth:
    worker: RecordWorker
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
            try:
                self.result = await self.worker.call(FOREGROUND, worker.probe)
            except Exception as exc:  # the worker could not start or died
                self.result = {"worker": f"{exc.__class__.__name__}: {exc}"}
            self.checked_at = time.monotonic()
            return self.result

"""Health: are the protocol engines able to serve? Checked by really starting them.

The probe (app/engine_probe.py: a default scenario world is started, each listener is
connected to and must greet, then all of it is torn down) runs where the engines
already are, never in the web process: in the lab process when the lab is on and
serving, else in the recording worker, ahead of the pool's background refills. So
with the lab on, neither a cold start nor a health checker needs the worker: it is
started for the pool alone and may stop when idle. The answer is cached briefly so a
busy health checker costs little.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.scenarios import worker
from app.web.record_worker import FOREGROUND, RecordWorker

if TYPE_CHECKING:
    from app.lab.control import LabProcess

CACHE_SECONDS = 10.0


@dataclass
class EngineHealth:
    worker: RecordWorker
    lab: LabProcess | None = None
    checked_at: float = 0.0
    result: dict[str, str] = field(default_factory=dict)
    probed_in: str = ""  # "lab" or "worker": which process ran the last probe
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
        if self.lab is not None and self.lab.ready.is_set():
            try:
                result: dict[str, str] = await self.lab.request("probe")
            except Exception:  # restarting or hung: the worker answers instead
                pass
            else:
                self.probed_in = "lab"
                return result
        try:
            result = await self.worker.call(FOREGROUND, worker.probe)
        except Exception as exc:  # the worker could not start or died
            return {"worker": f"{exc.__class__.__name__}: {exc}"}
        self.probed_in = "worker"
        return result

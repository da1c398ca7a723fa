"""The flow service: runs scenarios for browser sessions and keeps their recordings."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.engines.tls import LabTLS
from app.explanations import Catalog
from app.scenarios.model import Scenario
from app.scenarios.runner import Recording, run_scenario
from app.web.sessions import FlowSession, SessionStore

# Runs are CPU work (TLS handshakes); a few at a time keeps page loads fair on 2 cores.
CONCURRENT_RUNS = 4


class FlowService:
    def __init__(
        self,
        *,
        tls: LabTLS,
        runs_dir: Path,
        scenarios: dict[str, Scenario],
        catalog: Catalog,
        session_ttl: float,
        max_sessions: int,
    ) -> None:
        self.tls = tls
        self.runs_dir = runs_dir
        self.scenarios = scenarios
        self.catalog = catalog
        self.sessions = SessionStore(session_ttl, max_sessions)
        self._slots = asyncio.Semaphore(CONCURRENT_RUNS)
        self.runs = 0
        self.last_error: str | None = None

    async def record(self, slug: str, lang: str) -> Recording:
        async with self._slots:
            try:
                recording = await run_scenario(self.scenarios[slug], self.tls, self.runs_dir, lang)
            except Exception as exc:  # surfaced on /healthz and to the learner
                self.last_error = f"{slug}: {exc.__class__.__name__}: {exc}"
                raise
        self.runs += 1
        self.last_error = None
        return recording

    async def new_session(self, slug: str, lang: str) -> FlowSession:
        return self.sessions.add(slug, await self.record(slug, lang))

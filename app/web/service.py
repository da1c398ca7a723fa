"""The flow service: gives browser sessions their recordings and keeps the sessions.

Recordings come from the pool (app/web/recordings.py), which runs scenarios in the
worker process (app/web/record_worker.py); this process never runs a mail server.
"""

from __future__ import annotations

from app.explanations import Catalog
from app.scenarios.model import Scenario
from app.scenarios.recording import Recording
from app.web.recordings import RecordingPool
from app.web.sessions import FlowSession, SessionStore


class FlowService:
    def __init__(
        self,
        *,
        recordings: RecordingPool,
        scenarios: dict[str, Scenario],
        catalog: Catalog,
        session_ttl: float,
        max_sessions: int,
    ) -> None:
        self.recordings = recordings
        self.scenarios = scenarios
        self.catalog = catalog
        self.sessions = SessionStore(session_ttl, max_sessions)

    @property
    def runs(self) -> int:
        """Scenario runs finished for this process (pooled and private)."""
        return self.recordings.runs

    @property
    def last_error(self) -> str | None:
        return self.recordings.last_error

    async def record(self, slug: str, lang: str) -> Recording:
        """A private new run ("record afresh")."""
        return await self.recordings.fresh(slug, lang)

    async def new_session(self, slug: str, lang: str) -> FlowSession:
        """A session on the pool's shared recording (waits only while the pool is empty)."""
        return self.sessions.add(slug, await self.recordings.get(slug, lang))

    async def fresh_session(self, slug: str, lang: str) -> FlowSession:
        """A session on a private new run."""
        return self.sessions.add(slug, await self.recordings.fresh(slug, lang), private=True)

"""Browser sessions of the flow page: one recorded run and a cursor each.

Held in memory (the in-process hub); idle sessions expire so memory stays bounded.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from app.scenarios.recording import Recording


@dataclass
class FlowSession:
    id: str
    slug: str
    recording: Recording
    cursor: int = 0  # how many events are revealed
    speed: float = 1.0  # steps per second while playing
    last_seen: float = field(default_factory=time.monotonic)
    predict: Any = None  # predict mode's progress (app.web.predict_game.PredictState)
    private: bool = False  # a run of its own ("record afresh"), not the pool's shared one

    @property
    def total(self) -> int:
        return len(self.recording.events)

    def move_to(self, step: int) -> int:
        self.cursor = max(0, min(step, self.total))
        return self.cursor


class SessionStore:
    def __init__(self, ttl: float, max_sessions: int) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, FlowSession] = OrderedDict()

    def add(self, slug: str, recording: Recording, *, private: bool = False) -> FlowSession:
        self.prune()
        session = FlowSession(secrets.token_urlsafe(12), slug, recording, private=private)
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)  # the least recently used goes first
        return session

    def get(self, session_id: str | None) -> FlowSession | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        session.last_seen = time.monotonic()
        self._sessions.move_to_end(session_id)
        return session

    def replace(self, old: FlowSession, recording: Recording) -> FlowSession:
        """A fresh run under the same session id (the learner asked for a new mail)."""
        old.recording = recording
        old.cursor = 0
        old.predict = None
        old.private = True
        return old

    def prune(self) -> None:
        limit = time.monotonic() - self.ttl
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_seen >= limit:
                break
            self._sessions.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sessions)

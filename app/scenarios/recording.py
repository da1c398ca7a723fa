"""A recording: what one real run of a scenario said, in order. Immutable and shareable.

Kept apart from the runner so the web process can hold and unpickle recordings
without importing the engines (runs happen in the worker process).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from app.events import NO_DETAIL, Event


@dataclass(frozen=True, eq=False)
class Recording:
    """One real run, immutable: any number of learners may share it (each with a cursor).

    Compared by identity (`eq=False`): two runs are never "the same recording".
    """

    slug: str
    lang: str
    events: tuple[Event, ...]
    started: float  # wall clock (time.time()) when the run began: the page's "recorded at"
    seconds: float
    pid: int = field(default_factory=os.getpid)  # the process that ran the engines

    def __len__(self) -> int:
        return len(self.events)

    def __reduce__(self) -> tuple[Any, ...]:
        # Recordings come back from the worker process pickled. Events travel as plain
        # tuples (no class reference per event) with an empty detail as None.
        rows = [(*e[:11], dict(e.detail) if e.detail else None) for e in self.events]
        return _unpickle, (self.slug, self.lang, rows, self.started, self.seconds, self.pid)


def _unpickle(
    slug: str, lang: str, rows: list[tuple[Any, ...]], started: float, seconds: float, pid: int
) -> Recording:
    # Interned actor, protocol and key strings are shared by every recording in the process.
    intern = sys.intern
    events = tuple(
        Event(seq, intern(session), panel, intern(src), intern(dst), intern(protocol), port,
              tls, intern(direction), text, intern(key), NO_DETAIL if detail is None else detail)
        for seq, session, panel, src, dst, protocol, port, tls, direction, text, key, detail
        in rows
    )  # fmt: skip
    return Recording(slug, lang, events, started, seconds, pid)

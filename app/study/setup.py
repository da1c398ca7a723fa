"""Start-up of the study modes: database, migrations, content, the signing key."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

from itsdangerous import URLSafeSerializer

from app.config import Settings
from app.study.content import Content, content
from app.study.db import Database
from app.study.learner import LearnerCookies
from app.study.schema import migrate
from app.study.srs import make_scheduler
from app.study.store import Store


@dataclass
class Study:
    """Everything the study routes need; kept as app.state.study."""

    content: Content
    db: Database
    store: Store
    cookies: LearnerCookies
    questions: URLSafeSerializer  # signs the port-quiz question a form carries

    def close(self) -> None:
        """Let the database threads finish their work, then close the connections."""
        self.db.close()


def init_study(settings: Settings, *, fuzz: bool | None = None) -> Study:
    """Open the database, apply the migrations, load and check the content."""
    if fuzz is None:
        # FSRS fuzzing spreads reviews of equal cards apart; off only for reproducible runs.
        fuzz = os.environ.get("MAILFLOW_FSRS_FUZZ", "1") != "0"
    data = content()
    db = Database(settings.resolved_database_url)
    migrate(db)  # in a process of its own, only when the schema is behind (schema.py)
    store = Store(db, make_scheduler(fuzz), list(data.cards))
    key = store.secret("signing-key")
    # Everything loaded so far (content, templates, compiled code) lives for the whole
    # process: keep it out of the cyclic GC's full collections, which otherwise stalled
    # every request for 100–500 ms at a time under load (see docs/benchmarks.md).
    gc.freeze()
    return Study(
        content=data,
        db=db,
        store=store,
        cookies=LearnerCookies(key, store),
        questions=URLSafeSerializer(key, salt="port-question"),
    )

"""A PostgreSQL connection the server dropped (a restart, an idle timeout, an administrator)
is replaced at the next request instead of failing it: what SQLAlchemy's pool_pre_ping did
before the store moved to psycopg itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.study import srs
from app.study.db import Database
from app.study.schema import migrate
from app.study.store import Store

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def _answer(store: Store, learner: str, nonce: str) -> Any:
    return store.record_port_answer(
        learner, mode="srs", card="25", kind="svc2port", given="25", correct=True, ms=9000,
        nonce=nonce, now=NOW,
    )  # fmt: skip


def test_a_connection_the_server_dropped_is_replaced(postgres: Any) -> None:
    db = Database(postgres.new_database())
    migrate(db)
    store = Store(db, srs.make_scheduler(fuzz=False), ["25", "587"])
    learner = store.new_learner_id()
    assert _answer(store, learner, "n1") is not None  # this thread's connection is open
    name = db.url.connect["dbname"]
    with postgres.connect(name) as admin:
        others = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
        assert others
        for (pid,) in others:
            # With a timeout, the call returns once the backend has really gone.
            ended = admin.execute("SELECT pg_terminate_backend(%s, 20000)", (pid,)).fetchone()
            assert ended == (True,)
    # The same thread, its connection now dead without its knowing: the answer still counts.
    assert _answer(store, learner, "n2") is not None
    assert store.progress(learner, NOW).answered == 2
    db.close()

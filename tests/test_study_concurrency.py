"""Answers that arrive at the same moment on PostgreSQL, where writers really run side by side
(SQLite's are queued by the store's writer lock).

Both answers are held at the same point by a lock on the learner table that another
connection holds; once both have reached it (seen by the statements they execute), the lock
goes and they race for real: a double-clicked answer is stored once, two answers to one
card both count in its FSRS state, and neither request fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.study import srs
from app.study.db import Database
from app.study.schema import migrate
from app.study.store import Store

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
STALLED = 20.0  # only turns a deadlock into a failure; the waits end on events


def _race(postgres: Any, url: str, store: Store, answers: list[Callable[[], Any]]) -> list[Any]:
    """Run the answers at once, all of them held until each has reached the learner table."""
    reached: set[int] = set()
    guard = threading.Lock()
    all_there = threading.Event()

    def spot(statement: str) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO LEARNER"):
            with guard:
                reached.add(threading.get_ident())
                if len(reached) == len(answers):
                    all_there.set()

    store.db.trace = spot
    results: list[Any] = [None] * len(answers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = answers[i]()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(answers))]
    with postgres.connect(store.db.url.connect["dbname"]) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE learner IN EXCLUSIVE MODE")
        for t in threads:
            t.start()
        assert all_there.wait(STALLED), "the answers did not both reach the database"
        holder.execute("ROLLBACK")
    for t in threads:
        t.join()
    store.db.trace = None
    assert errors == []
    return results


def _answer(store: Store, learner: str, card: str, nonce: str) -> Callable[[], Any]:
    return lambda: store.record_port_answer(
        learner,
        mode="srs",
        card=card,
        kind="svc2port",
        given=card,
        correct=True,
        ms=9000,
        nonce=nonce,
        now=NOW,
    )


def test_answers_at_the_same_moment_on_postgresql(postgres: Any) -> None:
    url = postgres.new_database()
    db = Database(url)
    migrate(db)
    store = Store(db, srs.make_scheduler(fuzz=False), ["25", "587"])
    learner = store.new_learner_id()

    # A brand-new learner double-clicks: the same answer twice, stored once.
    twice = _race(postgres, url, store, [_answer(store, learner, "25", "n1")] * 2)
    assert sorted(r is None for r in twice) == [False, True]

    # Two different answers to one card at once: both count, the card reviewed twice.
    _race(
        postgres,
        url,
        store,
        [_answer(store, learner, "587", "n2"), _answer(store, learner, "587", "n3")],
    )
    with store.db.read() as s:
        assert s.scalar("SELECT COUNT(*) FROM answer") == 3
        assert s.scalar("SELECT reps FROM card_state WHERE card = '587'") == 2
    store.db.close()

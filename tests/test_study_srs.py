"""FSRS scheduling of port cards, with fuzzing off so intervals are exact; the store on
SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fsrs import Rating, State

from app.study import srs
from app.study.db import Database
from app.study.schema import migrate
from app.study.store import Store

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def test_rating_rules() -> None:
    assert srs.rating_for(False, 500, "mc_svc2port") == Rating.Again
    assert srs.rating_for(True, 1500, "mc_svc2port") == Rating.Easy
    assert srs.rating_for(True, 9000, "mc_svc2port") == Rating.Good
    assert srs.rating_for(True, None, "port2svc") == Rating.Good
    # Typing takes longer than clicking, so "fast" is more generous there.
    assert srs.rating_for(True, 6000, "port2svc") == Rating.Easy


def test_schedule_without_fuzz_is_deterministic() -> None:
    sched = srs.make_scheduler(fuzz=False)
    good = srs.review(sched, None, Rating.Good, NOW)
    again = srs.review(sched, None, Rating.Again, NOW)
    easy = srs.review(sched, None, Rating.Easy, NOW)
    assert again.due - NOW == timedelta(minutes=1)
    assert good.due - NOW == timedelta(minutes=10)
    assert easy.state == State.Review and easy.due - NOW >= timedelta(days=1)
    # Good twice graduates the card to Review with an interval of days.
    second = srs.review(sched, good, Rating.Good, good.due)
    assert second.state == State.Review
    assert second.due - good.due >= timedelta(days=1)
    # The same inputs give the same schedule.
    assert srs.review(sched, good, Rating.Good, good.due) == second
    # A miss of a Review card sends it back to relearning, due again in minutes.
    lapse = srs.review(sched, second, Rating.Again, second.due)
    assert lapse.state == State.Relearning
    assert lapse.due - second.due == timedelta(minutes=10)


def test_store_keeps_fsrs_state_per_learner(database_url: str) -> None:
    db = Database(database_url)
    migrate(db)
    store = Store(db, srs.make_scheduler(fuzz=False), ["25", "587"])
    learner = store.new_learner_id()
    dues = store.card_dues(learner, NOW)
    assert [d.card for d in dues] == ["25", "587"] and all(d.due == NOW for d in dues)

    assert store.record_port_answer(
        learner,
        mode="srs",
        card="25",
        kind="mc_svc2port",
        given="25",
        correct=True,
        ms=9000,
        nonce="a",
        now=NOW,
    )
    # The same form sent twice is one answer.
    assert not store.record_port_answer(
        learner,
        mode="srs",
        card="25",
        kind="mc_svc2port",
        given="25",
        correct=True,
        ms=9000,
        nonce="a",
        now=NOW,
    )
    store.record_port_answer(
        learner,
        mode="srs",
        card="587",
        kind="svc2port",
        given="25",
        correct=False,
        ms=2000,
        nonce="b",
        now=NOW,
    )
    # Practice answers count, but leave the schedule alone.
    store.record_port_answer(
        learner,
        mode="practice",
        card="587",
        kind="svc2port",
        given="587",
        correct=True,
        ms=1000,
        nonce="c",
        now=NOW,
    )
    dues = {d.card: d for d in store.card_dues(learner, NOW)}
    assert dues["25"].due == NOW + timedelta(minutes=10) and dues["25"].reps == 1
    assert dues["587"].due == NOW + timedelta(minutes=1) and dues["587"].reps == 1
    p = store.progress(learner, NOW)
    assert (p.answered, p.correct, p.due) == (3, 2, 0)
    assert store.progress(learner, NOW + timedelta(minutes=5)).due == 1
    assert store.port_accuracy(learner) == {"25": (1, 1), "587": (1, 2)}
    db.close()

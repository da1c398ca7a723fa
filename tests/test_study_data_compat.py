"""Databases written through SQLAlchemy (the store before it moved to the DB-API drivers,
and Alembic's migrations still) and through the store now read back identically both ways.

SQLite has no date or boolean type: SQLAlchemy stores DateTime as the text
"YYYY-MM-DD HH:MM:SS.ffffff" and Boolean as 0/1, and the store must write exactly that and
read it back as aware UTC datetimes and bools. On PostgreSQL the columns are timestamptz
and boolean. The SQLAlchemy side below is SQLAlchemy Core on the tables of models.py, as
the store wrote and read them before.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import DateTime, Engine, select

from app.study import srs, transfer
from app.study.content import content
from app.study.db import Database
from app.study.dialect import BOOLEAN_COLUMNS, DATETIME_COLUMNS
from app.study.migrate import make_engine
from app.study.models import (
    answer_t,
    card_t,
    exam_answer_t,
    exam_run_t,
    learner_t,
    metadata,
    secret_t,
    speed_t,
)
from app.study.schema import migrate
from app.study.store import Store

C = content()
LID = "0b9c7a51-3b8e-4d0e-9d8e-1f2a3b4c5d6e"
# With microseconds and without: SQLAlchemy's text keeps six digits either way.
T0 = datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 4, 2, 23, 59, 58, 123456, tzinfo=UTC)
SQLITE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture
def both(database_url: str) -> Iterator[tuple[Store, Engine]]:
    """The store and a SQLAlchemy engine on one migrated database."""
    db = Database(database_url)
    migrate(db)
    engine = make_engine(database_url)
    yield Store(db, srs.make_scheduler(fuzz=False), list(C.cards)), engine
    db.close()
    engine.dispose()


def test_the_type_lists_name_every_datetime_and_boolean_column() -> None:
    columns = [c for t in metadata.tables.values() for c in t.columns]
    assert {c.name for c in columns if isinstance(c.type, DateTime)} == DATETIME_COLUMNS
    assert {c.name for c in columns if c.type.python_type is bool} == BOOLEAN_COLUMNS


def test_what_sqlalchemy_wrote_the_store_reads(both: tuple[Store, Engine]) -> None:
    store, engine = both
    exam_q = sorted(C.questions)[:2]
    with engine.begin() as conn:
        conn.execute(secret_t.insert().values(name="signing-key", value="k" * 64))
        conn.execute(learner_t.insert().values(id=LID, created_at=T0))
        conn.execute(
            answer_t.insert(),
            [
                dict(
                    learner_id=LID, mode="srs", item="25", kind="mc_svc2port", given="25",
                    correct=True, ms=1200, at=T0, nonce="a",
                ),
                dict(
                    learner_id=LID, mode="speed", item="110", kind="mc_port2svc", given="143",
                    correct=False, ms=None, at=T1, nonce="b",
                ),
                dict(
                    learner_id=LID, mode="exam", item=exam_q[0], kind="mini", given="2",
                    correct=False, ms=None, at=T1, nonce="r1:0",
                ),
            ],
        )  # fmt: skip
        conn.execute(
            card_t.insert().values(
                learner_id=LID, card="25", state=2, step=None, stability=3.25,
                difficulty=5.5, due=T1, last_review=T0, reps=4,
            )
        )  # fmt: skip
        conn.execute(
            speed_t.insert().values(id="s1", learner_id=LID, started_at=T0, score=7, answered=9)
        )
        conn.execute(
            exam_run_t.insert().values(
                id="r1", learner_id=LID, mode="mini", topic=None,
                questions=" ".join(exam_q), started_at=T1,
            )
        )  # fmt: skip
        conn.execute(
            exam_answer_t.insert().values(
                run_id="r1", position=0, question=exam_q[0], choice=2, correct=False
            )
        )

    assert store.secret("signing-key") == "k" * 64
    assert store.learner_exists(LID)
    dues = {d.card: d for d in store.card_dues(LID, T0)}
    assert (dues["25"].due, dues["25"].reps, dues["25"].seen) == (T1, 4, True)
    assert dues["25"].due.utcoffset() == timedelta(0)
    assert store.progress(LID, T0).answered == 3 and store.progress(LID, T0).correct == 1
    assert store.port_accuracy(LID) == {"25": (1, 1), "110": (0, 1)}
    assert store.speed_best(LID) == 7
    run = store.speed_run(LID, "s1")
    assert run is not None and run.started_at == T0 and (run.score, run.answered) == (7, 9)
    found = store.exam_run(LID, "r1")
    assert found is not None
    exam, answers = found
    assert exam.started_at == T1 and exam.questions.split() == exam_q
    assert answers[0].correct is False and answers[0].choice == 2
    assert store.last_misses(LID) == [exam_q[0]]
    days = dict((d, (n, r)) for d, n, r in store.reviews_per_day(LID, T1 + timedelta(hours=1)))
    assert days["2026-04-01"] == (1, 1) and days["2026-04-03"] == (2, 0)  # Tokyo's calendar

    doc = transfer.export(store, LID)
    assert doc["answers"] == [
        {"mode": "srs", "item": "25", "kind": "mc_svc2port", "given": "25", "correct": True,
         "ms": 1200, "at": "2026-04-01T09:00:00+00:00", "nonce": "a"},
        {"mode": "speed", "item": "110", "kind": "mc_port2svc", "given": "143",
         "correct": False, "ms": None, "at": "2026-04-02T23:59:58.123456+00:00", "nonce": "b"},
        {"mode": "exam", "item": exam_q[0], "kind": "mini", "given": "2", "correct": False,
         "ms": None, "at": "2026-04-02T23:59:58.123456+00:00", "nonce": "r1:0"},
    ]  # fmt: skip
    assert doc["cards"] == [
        {"card": "25", "state": 2, "step": None, "stability": 3.25, "difficulty": 5.5,
         "due": "2026-04-02T23:59:58.123456+00:00",
         "last_review": "2026-04-01T09:00:00+00:00", "reps": 4},
    ]  # fmt: skip
    assert doc["speed_runs"] == [
        {"started_at": "2026-04-01T09:00:00+00:00", "score": 7, "answered": 9}
    ]
    assert doc["exam_runs"] == [
        {"mode": "mini", "topic": None, "questions": exam_q,
         "started_at": "2026-04-02T23:59:58.123456+00:00",
         "answers": [{"position": 0, "question": exam_q[0], "choice": 2, "correct": False}]},
    ]  # fmt: skip


def test_what_the_store_wrote_sqlalchemy_reads(both: tuple[Store, Engine]) -> None:
    store, engine = both
    assert store.record_port_answer(
        LID, mode="srs", card="25", kind="mc_svc2port", given="25", correct=True, ms=9000,
        nonce="n1", now=T1,
    )  # fmt: skip
    run_id = store.start_speed(LID, T0)
    assert store.record_speed_answer(
        LID, run_id, card="110", kind="mc_port2svc", given="143", correct=False, ms=800,
        nonce="n2", now=T0 + timedelta(seconds=5),
    )  # fmt: skip
    qid = sorted(C.questions)[0]
    exam_id = store.start_exam(LID, "mini", None, [qid], T1)
    assert store.record_exam_answer(LID, exam_id, 0, qid, 1, True, T1)
    assert store.record_room_answer(LID, f"predict:{qid}", "predict", "1", True, "room:1", T1)

    with engine.connect() as conn:
        answers = conn.execute(select(answer_t).order_by(answer_t.c.id)).all()
        assert [(a.mode, a.correct, a.ms, a.nonce) for a in answers] == [
            ("srs", True, 9000, "n1"),
            ("speed", False, 800, "n2"),
            ("exam", True, None, f"{exam_id}:0"),
            ("room", True, None, "room:1"),
        ]
        assert all(type(a.correct) is bool for a in answers)
        times = [_utc(a.at) for a in answers]
        assert times == [T1, T0 + timedelta(seconds=5), T1, T1]
        card = conn.execute(select(card_t)).one()
        assert (card.card, card.reps, _utc(card.last_review)) == ("25", 1, T1)
        assert _utc(card.due) == T1 + timedelta(minutes=10)  # FSRS: Good, a new card
        speed = conn.execute(select(speed_t)).one()
        assert (_utc(speed.started_at), speed.score, speed.answered) == (T0, 0, 1)
        exam = conn.execute(select(exam_run_t)).one()
        assert (exam.mode, exam.questions, _utc(exam.started_at)) == ("mini", qid, T1)
        choice = conn.execute(select(exam_answer_t)).one()
        assert (choice.position, choice.choice, choice.correct) == (0, 1, True)
    _raw_sqlite_is_sqlalchemys(engine)


def test_an_import_is_stored_as_sqlalchemy_would(both: tuple[Store, Engine]) -> None:
    """transfer.apply's executemany writes the same values an export read back."""
    store, engine = both
    store.record_port_answer(
        LID, mode="srs", card="25", kind="mc_svc2port", given="25", correct=True, ms=9000,
        nonce="n1", now=T1,
    )  # fmt: skip
    before = transfer.export(store, LID)
    other = "a0000000-0000-4000-8000-000000000001"
    body = transfer.json.dumps(before).encode()
    transfer.apply(store, other, transfer.parse(body, C).doc)
    after = transfer.export(store, other)
    assert {k: v for k, v in after.items() if k != "exported_at"} == {
        k: v for k, v in before.items() if k != "exported_at"
    }
    with engine.connect() as conn:
        rows = conn.execute(select(answer_t).where(answer_t.c.learner_id == other)).all()
        assert [(r.correct, _utc(r.at)) for r in rows] == [(True, T1)]
        card = conn.execute(select(card_t).where(card_t.c.learner_id == other)).one()
        assert _utc(card.due) == T1 + timedelta(minutes=10)
    _raw_sqlite_is_sqlalchemys(engine)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _raw_sqlite_is_sqlalchemys(engine: Engine) -> None:
    """On SQLite, the stored text itself: SQLAlchemy's format, 0/1 integers."""
    if engine.dialect.name != "sqlite":
        return
    with sqlite3.connect(str(engine.url.database)) as raw:
        for table, column in [
            ("answer", "at"), ("card_state", "due"), ("card_state", "last_review"),
            ("speed_run", "started_at"), ("exam_run", "started_at"), ("learner", "created_at"),
        ]:  # fmt: skip
            values: list[Any] = [v for (v,) in raw.execute(f"SELECT {column} FROM {table}")]
            assert all(SQLITE_TIME.match(v) for v in values), (table, values)
            assert values or table in ("speed_run", "exam_run"), table
        kinds = raw.execute("SELECT DISTINCT typeof(correct) FROM answer").fetchall()
        assert kinds == [("integer",)]

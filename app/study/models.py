"""Tables of the study modes. The schema itself lives in Alembic migrations; these mirror it.

For Alembic (migrations/env.py) and the tests only: the web process never imports this
module nor SQLAlchemy. The store's hand-written SQL (store.py, transfer.py) names the same
columns, and dialect.py's lists of date-time and boolean columns follow these types
(tests/test_study_data_compat.py checks both).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def _learner_fk() -> ForeignKey:
    return ForeignKey("learner.id", ondelete="CASCADE")


# Server-side secrets (the cookie signing key), kept with the data they protect.
secret_t = Table(
    "study_secret",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
)

learner_t = Table(
    "learner",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One answer, port quiz or question bank; the source of every statistic.
answer_t = Table(
    "answer",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("learner_id", String(36), _learner_fk(), nullable=False),
    Column("mode", String(12), nullable=False),  # ports | speed | exam
    Column("item", String(60), nullable=False),  # port card ("995") or question id
    Column("kind", String(20), nullable=False),  # question kind, or the exam run mode
    Column("given", String(200), nullable=False),
    Column("correct", Boolean, nullable=False),
    Column("ms", Integer, nullable=True),  # time to answer
    Column("at", DateTime(timezone=True), nullable=False),
    Column("nonce", String(40), nullable=True),
    Index("ix_answer_learner_at", "learner_id", "at"),
    UniqueConstraint("learner_id", "nonce", name="uq_answer_nonce"),
)

# The FSRS state of one port card for one learner.
card_t = Table(
    "card_state",
    metadata,
    Column("learner_id", String(36), _learner_fk(), primary_key=True),
    Column("card", String(20), primary_key=True),
    Column("state", Integer, nullable=False),
    Column("step", Integer, nullable=True),
    Column("stability", Float, nullable=True),
    Column("difficulty", Float, nullable=True),
    Column("due", DateTime(timezone=True), nullable=False),
    Column("last_review", DateTime(timezone=True), nullable=True),
    Column("reps", Integer, nullable=False, default=0),
)

speed_t = Table(
    "speed_run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("learner_id", String(36), _learner_fk(), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("score", Integer, nullable=False, default=0),
    Column("answered", Integer, nullable=False, default=0),
    Index("ix_speed_learner", "learner_id", "score"),
)

# A sitting of the question bank: its questions in order and how far the learner got.
exam_run_t = Table(
    "exam_run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("learner_id", String(36), _learner_fk(), nullable=False),
    Column("mode", String(12), nullable=False),  # topic | mini | review
    Column("topic", String(40), nullable=True),
    Column("questions", Text, nullable=False),  # space-separated question ids
    Column("started_at", DateTime(timezone=True), nullable=False),
    Index("ix_exam_run_learner", "learner_id", "started_at"),
)

exam_answer_t = Table(
    "exam_answer",
    metadata,
    Column(
        "run_id", String(32), ForeignKey("exam_run.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("position", Integer, primary_key=True),
    Column("question", String(60), nullable=False),
    Column("choice", Integer, nullable=False),
    Column("correct", Boolean, nullable=False),
)

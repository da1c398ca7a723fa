"""Tables of the study modes. The schema itself lives in Alembic migrations; these mirror it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Secret(Base):
    """Server-side secrets (the cookie signing key), kept with the data they protect."""

    __tablename__ = "study_secret"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class Learner(Base):
    __tablename__ = "learner"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Answer(Base):
    """One answer, port quiz or question bank; the source of every statistic."""

    __tablename__ = "answer"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learner.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(12))  # ports | speed | exam
    item: Mapped[str] = mapped_column(String(60))  # port card ("995") or question id
    kind: Mapped[str] = mapped_column(String(20))  # question kind, or the exam run mode
    given: Mapped[str] = mapped_column(String(200))
    correct: Mapped[bool] = mapped_column(Boolean)
    ms: Mapped[int | None] = mapped_column(Integer, nullable=True)  # time to answer
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    nonce: Mapped[str | None] = mapped_column(String(40), nullable=True)
    __table_args__ = (
        Index("ix_answer_learner_at", "learner_id", "at"),
        UniqueConstraint("learner_id", "nonce", name="uq_answer_nonce"),
    )


class CardState(Base):
    """The FSRS state of one port card for one learner."""

    __tablename__ = "card_state"
    learner_id: Mapped[str] = mapped_column(
        ForeignKey("learner.id", ondelete="CASCADE"), primary_key=True
    )
    card: Mapped[str] = mapped_column(String(20), primary_key=True)
    state: Mapped[int] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stability: Mapped[float | None] = mapped_column(Float, nullable=True)
    difficulty: Mapped[float | None] = mapped_column(Float, nullable=True)
    due: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_review: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reps: Mapped[int] = mapped_column(Integer, default=0)


class SpeedRun(Base):
    __tablename__ = "speed_run"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learner.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    score: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (Index("ix_speed_learner", "learner_id", "score"),)


class ExamRun(Base):
    """A sitting of the question bank: its questions in order and how far the learner got."""

    __tablename__ = "exam_run"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learner.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(12))  # topic | mini | review
    topic: Mapped[str | None] = mapped_column(String(40), nullable=True)
    questions: Mapped[str] = mapped_column(Text)  # space-separated question ids
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_exam_run_learner", "learner_id", "started_at"),)


class ExamAnswer(Base):
    __tablename__ = "exam_answer"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("exam_run.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    question: Mapped[str] = mapped_column(String(60))
    choice: Mapped[int] = mapped_column(Integer)
    correct: Mapped[bool] = mapped_column(Boolean)

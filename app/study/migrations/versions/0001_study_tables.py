"""Study tables: learners, answers, FSRS cards, speed rounds, exam runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "study_secret",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_table(
        "learner",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "answer",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "learner_id",
            sa.String(36),
            sa.ForeignKey("learner.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(12), nullable=False),
        sa.Column("item", sa.String(60), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("given", sa.String(200), nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("ms", sa.Integer, nullable=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("nonce", sa.String(40), nullable=True),
        sa.UniqueConstraint("learner_id", "nonce", name="uq_answer_nonce"),
    )
    op.create_index("ix_answer_learner_at", "answer", ["learner_id", "at"])
    op.create_table(
        "card_state",
        sa.Column(
            "learner_id",
            sa.String(36),
            sa.ForeignKey("learner.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("card", sa.String(20), primary_key=True),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=True),
        sa.Column("stability", sa.Float, nullable=True),
        sa.Column("difficulty", sa.Float, nullable=True),
        sa.Column("due", TZ, nullable=False),
        sa.Column("last_review", TZ, nullable=True),
        sa.Column("reps", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "speed_run",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "learner_id",
            sa.String(36),
            sa.ForeignKey("learner.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("score", sa.Integer, nullable=False, server_default="0"),
        sa.Column("answered", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_speed_learner", "speed_run", ["learner_id", "score"])
    op.create_table(
        "exam_run",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "learner_id",
            sa.String(36),
            sa.ForeignKey("learner.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mode", sa.String(12), nullable=False),
        sa.Column("topic", sa.String(40), nullable=True),
        sa.Column("questions", sa.Text, nullable=False),
        sa.Column("started_at", TZ, nullable=False),
    )
    op.create_index("ix_exam_run_learner", "exam_run", ["learner_id", "started_at"])
    op.create_table(
        "exam_answer",
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("exam_run.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("question", sa.String(60), nullable=False),
        sa.Column("choice", sa.Integer, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "exam_answer",
        "exam_run",
        "speed_run",
        "card_state",
        "answer",
        "learner",
        "study_secret",
    ):
        op.drop_table(name)

"""Prebuilt statements for the answer hot path, one set per database dialect.

Built once with bind parameters on the Core tables, so each answer only binds values:
building a fresh select()/insert() per call spent more time in SQLAlchemy's statement
construction and cache-key generation than SQLite spent executing it.

Portable SQL except where concurrency needs more than the SQL standard offers:
- "insert unless there" is INSERT … ON CONFLICT DO NOTHING (RETURNING tells whether it
  did), which SQLite (3.35+) and PostgreSQL both have, each through its own SQLAlchemy
  dialect construct. A check-then-insert would race on PostgreSQL, where two requests
  write at once (a double click sends the same answer twice), and the loser's unique
  violation would abort its transaction.
- an answer locks its learner's row first (SELECT … FOR UPDATE) on PostgreSQL, so two
  answers of one learner update the FSRS card one after the other instead of both
  inserting it. SQLite already serialises writers (db.Database's write lock), so there the
  lock statement is None and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, bindparam, select, update
from sqlalchemy.dialects import sqlite

from app.study.models import answer_t, card_t, learner_t, secret_t


@dataclass(frozen=True)
class Statements:
    learner_insert: Executable  # ON CONFLICT DO NOTHING; binds lid, now
    learner_lock: Executable | None  # serialises one learner's writes; None on SQLite
    answer_insert: Executable  # ON CONFLICT (learner_id, nonce) DO NOTHING RETURNING id
    secret_insert: Executable  # ON CONFLICT DO NOTHING; binds name, value
    card_get: Executable
    card_insert: Executable
    card_update: Executable
    dues: Executable


def statements(dialect: str) -> Statements:
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"the study database must be SQLite or PostgreSQL, not {dialect}")
    insert: Any = sqlite.insert
    if dialect == "postgresql":
        # Imported only for PostgreSQL: about 2 MB the SQLite default never needs.
        from sqlalchemy.dialects import postgresql

        insert = postgresql.insert
    return Statements(
        learner_insert=insert(learner_t)
        .values(id=bindparam("lid"), created_at=bindparam("now"))
        .on_conflict_do_nothing(index_elements=["id"]),
        learner_lock=(
            select(learner_t.c.id).where(learner_t.c.id == bindparam("lid")).with_for_update()
            if dialect == "postgresql"
            else None
        ),
        answer_insert=insert(answer_t)
        .on_conflict_do_nothing(index_elements=["learner_id", "nonce"])
        .returning(answer_t.c.id),
        secret_insert=insert(secret_t)
        .values(name=bindparam("name"), value=bindparam("value"))
        .on_conflict_do_nothing(index_elements=["name"]),
        card_get=select(card_t).where(
            card_t.c.learner_id == bindparam("lid"), card_t.c.card == bindparam("card")
        ),
        card_insert=card_t.insert(),
        card_update=(
            update(card_t)
            .where(card_t.c.learner_id == bindparam("lid"), card_t.c.card == bindparam("key_card"))
            .values(
                state=bindparam("state"),
                step=bindparam("step"),
                stability=bindparam("stability"),
                difficulty=bindparam("difficulty"),
                due=bindparam("due"),
                last_review=bindparam("last_review"),
                reps=bindparam("reps"),
            )
        ),
        dues=select(card_t.c.card, card_t.c.due, card_t.c.reps).where(
            card_t.c.learner_id == bindparam("lid")
        ),
    )

"""Prebuilt statements for the answer hot path.

Built once with bind parameters on the Core tables, so each answer only binds values:
building a fresh select()/insert() per call spent more time in SQLAlchemy's statement
construction and cache-key generation than SQLite spent executing it.
"""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update

from app.study.models import Answer, CardState, Learner

answer_t = Answer.__table__
card_t = CardState.__table__
learner_t = Learner.__table__

LEARNER_EXISTS = select(learner_t.c.id).where(learner_t.c.id == bindparam("lid"))
LEARNER_INSERT = insert(learner_t).values(id=bindparam("lid"), created_at=bindparam("now"))
ANSWER_DUP = select(answer_t.c.id).where(
    answer_t.c.learner_id == bindparam("lid"), answer_t.c.nonce == bindparam("nonce")
)
ANSWER_INSERT = insert(answer_t)
CARD_GET = select(card_t).where(
    card_t.c.learner_id == bindparam("lid"), card_t.c.card == bindparam("card")
)
CARD_INSERT = insert(card_t)
CARD_UPDATE = (
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
)
DUES = select(card_t.c.card, card_t.c.due, card_t.c.reps).where(
    card_t.c.learner_id == bindparam("lid")
)

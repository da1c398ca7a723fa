"""The store's SQL statements that are used more than once or on the answer hot path.

Portable SQL with `:name` parameters, the same text on SQLite and PostgreSQL; what differs
(parameter style, FOR UPDATE, value formats) is dialect.py's. "Insert unless there" is
INSERT … ON CONFLICT … DO NOTHING, with RETURNING telling whether it inserted (SQLite
3.35+): a check-then-insert would race on PostgreSQL (dialect.py says why).
"""

from __future__ import annotations

# How many answers were right (a Boolean column must be summed as integers on PostgreSQL).
RIGHT = "COALESCE(SUM(CAST(correct AS INTEGER)), 0)"

LEARNER_INSERT = (
    "INSERT INTO learner (id, created_at) VALUES (:lid, :now) ON CONFLICT (id) DO NOTHING"
)
LEARNER_LOCK = "SELECT id FROM learner WHERE id = :lid"  # + FOR UPDATE on PostgreSQL
ANSWER_COLUMNS = "learner_id, mode, item, kind, given, correct, ms, at, nonce"
ANSWER_VALUES = ":learner_id, :mode, :item, :kind, :given, :correct, :ms, :at, :nonce"
ANSWER_INSERT = f"INSERT INTO answer ({ANSWER_COLUMNS}) VALUES ({ANSWER_VALUES})"
ANSWER_INSERT_NEW = f"{ANSWER_INSERT} ON CONFLICT (learner_id, nonce) DO NOTHING RETURNING id"
CARD_COLUMNS = "state, step, stability, difficulty, due, last_review, reps"
CARD_GET = f"SELECT {CARD_COLUMNS} FROM card_state WHERE learner_id = :lid AND card = :card"
CARD_INSERT = (
    f"INSERT INTO card_state (learner_id, card, {CARD_COLUMNS}) VALUES"
    " (:lid, :card, :state, :step, :stability, :difficulty, :due, :last_review, :reps)"
)
CARD_UPDATE = (
    "UPDATE card_state SET state = :state, step = :step, stability = :stability,"
    " difficulty = :difficulty, due = :due, last_review = :last_review, reps = :reps"
    " WHERE learner_id = :lid AND card = :card"
)
DUES = "SELECT card, due, reps FROM card_state WHERE learner_id = :lid"
SPEED_RUN = "SELECT id, learner_id, started_at, score, answered FROM speed_run WHERE id = :id"
EXAM_RUN = "SELECT id, learner_id, mode, topic, questions, started_at FROM exam_run"
EXAM_ANSWERS = "SELECT run_id, position, question, choice, correct FROM exam_answer"
SPEED_RUN_INSERT = (
    "INSERT INTO speed_run (id, learner_id, started_at, score, answered)"
    " VALUES (:id, :learner_id, :started_at, :score, :answered)"
)
EXAM_RUN_INSERT = (
    "INSERT INTO exam_run (id, learner_id, mode, topic, questions, started_at)"
    " VALUES (:id, :learner_id, :mode, :topic, :questions, :started_at)"
)
EXAM_ANSWER_INSERT = (
    "INSERT INTO exam_answer (run_id, position, question, choice, correct)"
    " VALUES (:run_id, :position, :question, :choice, :correct)"
)

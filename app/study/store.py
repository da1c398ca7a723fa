"""Every read and write of learner progress. Each write is one committed transaction."""

from __future__ import annotations

import secrets
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fsrs import Rating, Scheduler

from app.study import srs
from app.study.db import Database, Row, Tx
from app.study.statements import (
    ANSWER_INSERT,
    ANSWER_INSERT_NEW,
    CARD_GET,
    CARD_INSERT,
    CARD_UPDATE,
    DUES,
    EXAM_ANSWERS,
    EXAM_RUN,
    LEARNER_INSERT,
    LEARNER_LOCK,
    RIGHT,
    SPEED_RUN,
)

# Rows of the tables in app/study/models.py: named tuples, attributes named as the columns.
SpeedRun = Row  # speed_run
ExamRun = Row  # exam_run
ExamAnswer = Row  # exam_answer

SPEED_SECONDS = 60
SPEED_GRACE_S = 2  # the last click may arrive a moment after the clock hits zero
DAY_ZONE = ZoneInfo("Asia/Tokyo")  # "a day" for reviews per day: the learners' calendar


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """A datetime in UTC: naive ones were stored as UTC (the store's rows come back aware)."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Progress:
    answered: int
    correct: int
    due: int


@dataclass(frozen=True)
class CardDue:
    card: str
    due: datetime
    reps: int
    seen: bool


class Store:
    def __init__(self, db: Database, scheduler: Scheduler, card_ids: list[str]) -> None:
        self.db = db
        self.scheduler = scheduler
        self.card_ids = card_ids

    # ---- secrets and learners ----
    def secret(self, name: str) -> str:
        value = "SELECT value FROM study_secret WHERE name = :name"
        with self.db.read() as s:
            found = s.scalar(value, {"name": name})
            if found is not None:
                return str(found)
        # Two processes starting at once both get here: the first insert wins, both read it.
        with self.db.write() as s:
            s.execute(
                "INSERT INTO study_secret (name, value) VALUES (:name, :value)"
                " ON CONFLICT (name) DO NOTHING",
                {"name": name, "value": secrets.token_urlsafe(48)},
            )
            return str(s.scalar(value, {"name": name}))

    def learner_exists(self, learner_id: str) -> bool:
        with self.db.read() as s:
            found = s.scalar("SELECT id FROM learner WHERE id = :lid", {"lid": learner_id})
            return found is not None

    @staticmethod
    def new_learner_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def _ensure(s: Tx, learner_id: str) -> None:
        """The learner's row, created unless there (also when another request races us)."""
        s.execute(LEARNER_INSERT, {"lid": learner_id, "now": utcnow()})

    # ---- port quiz (the hot path: named statements, one transaction per answer) ----
    def _dues(self, conn: Tx | None, learner_id: str | None, now: datetime) -> list[CardDue]:
        rows: dict[str, Any] = {}
        if conn is not None and learner_id:
            rows = {r.card: r for r in conn.execute(DUES, {"lid": learner_id})}
        out = []
        for cid in self.card_ids:
            r = rows.get(cid)
            out.append(
                CardDue(cid, aware(r.due), r.reps, True) if r else CardDue(cid, now, 0, False)
            )
        return out

    def card_dues(self, learner_id: str | None, now: datetime) -> list[CardDue]:
        if not learner_id:
            return self._dues(None, None, now)
        with self.db.read() as conn:
            return self._dues(conn, learner_id, now)

    def record_port_answer(
        self,
        learner_id: str,
        *,
        mode: str,
        card: str,
        kind: str,
        given: str,
        correct: bool,
        ms: int | None,
        nonce: str,
        now: datetime,
    ) -> list[CardDue] | None:
        """Store the answer (and, in the spaced session, the new FSRS state).

        Returns every card's due time after the answer, or None when this exact question
        was already answered (a re-sent form) and nothing was stored.
        """
        with self.db.write() as conn:
            conn.execute(LEARNER_INSERT, {"lid": learner_id, "now": now})
            if conn.for_update:
                # PostgreSQL: this learner's answers take turns from here (dialect.py).
                conn.execute(LEARNER_LOCK + conn.for_update, {"lid": learner_id})
            added = conn.execute(
                ANSWER_INSERT_NEW,
                {
                    "learner_id": learner_id,
                    "mode": mode,
                    "item": card,
                    "kind": kind,
                    "given": given[:200],
                    "correct": correct,
                    "ms": ms,
                    "at": now,
                    "nonce": nonce,
                },
            )
            if added.fetchone() is None:  # this nonce is stored already: a re-sent form
                return None
            if mode == "srs":
                self._review(conn, learner_id, card, srs.rating_for(correct, ms, kind), now)
            return self._dues(conn, learner_id, now)

    def _review(self, conn: Tx, learner_id: str, card: str, rating: Rating, now: datetime) -> None:
        row = conn.first(CARD_GET, {"lid": learner_id, "card": card})
        fields = None
        if row is not None:
            fields = srs.CardFields(
                row.state,
                row.step,
                row.stability,
                row.difficulty,
                aware(row.due),
                aware(row.last_review) if row.last_review else None,
            )
        new = srs.review(self.scheduler, fields, rating, now)
        values = {
            "state": new.state,
            "step": new.step,
            "stability": new.stability,
            "difficulty": new.difficulty,
            "due": new.due,
            "last_review": new.last_review,
        }
        reps = 1 if row is None else row.reps + 1
        conn.execute(
            CARD_INSERT if row is None else CARD_UPDATE,
            {"lid": learner_id, "card": card, "reps": reps, **values},
        )

    # ---- speed round ----
    def start_speed(self, learner_id: str, now: datetime) -> str:
        run_id = secrets.token_hex(12)
        with self.db.write() as s:
            self._ensure(s, learner_id)
            s.execute(
                "INSERT INTO speed_run (id, learner_id, started_at, score, answered)"
                " VALUES (:id, :lid, :now, 0, 0)",
                {"id": run_id, "lid": learner_id, "now": now},
            )
        return run_id

    def speed_run(self, learner_id: str | None, run_id: str) -> SpeedRun | None:
        if not learner_id:
            return None
        with self.db.read() as s:
            run = s.first(SPEED_RUN, {"id": run_id})
            return run if run and run.learner_id == learner_id else None

    @staticmethod
    def speed_left(run: SpeedRun, now: datetime) -> float:
        return SPEED_SECONDS - (now - aware(run.started_at)).total_seconds()

    def record_speed_answer(
        self,
        learner_id: str,
        run_id: str,
        *,
        card: str,
        kind: str,
        given: str,
        correct: bool,
        ms: int | None,
        nonce: str,
        now: datetime,
    ) -> bool:
        """Counts only inside the minute (plus a short grace); False if it did not count."""
        try:
            return self._speed_answer(
                learner_id, run_id, card, kind, given, correct, ms, nonce, now
            )
        except self.db.dialect.integrity_errors:  # the same form twice at once: one counted
            return False

    def _speed_answer(
        self,
        learner_id: str,
        run_id: str,
        card: str,
        kind: str,
        given: str,
        correct: bool,
        ms: int | None,
        nonce: str,
        now: datetime,
    ) -> bool:
        with self.db.write() as s:
            # Locked on PostgreSQL (FOR UPDATE; nothing on SQLite, whose writers queue
            # already), so two answers at once each add to the score.
            run = s.first(SPEED_RUN + s.for_update, {"id": run_id})
            if run is None or run.learner_id != learner_id:
                return False
            if self.speed_left(run, now) < -SPEED_GRACE_S:
                return False
            seen = "SELECT id FROM answer WHERE learner_id = :lid AND nonce = :nonce"
            if s.scalar(seen, {"lid": learner_id, "nonce": nonce}) is not None:
                return False
            s.execute(
                ANSWER_INSERT,
                {
                    "learner_id": learner_id,
                    "mode": "speed",
                    "item": card,
                    "kind": kind,
                    "given": given[:200],
                    "correct": correct,
                    "ms": ms,
                    "at": now,
                    "nonce": nonce,
                },
            )
            s.execute(
                "UPDATE speed_run SET answered = answered + 1, score = score + :add WHERE id = :id",
                {"add": 1 if correct else 0, "id": run_id},
            )
            return True

    def speed_best(self, learner_id: str | None) -> int:
        if not learner_id:
            return 0
        with self.db.read() as s:
            best = s.scalar(
                "SELECT MAX(score) AS best FROM speed_run WHERE learner_id = :lid",
                {"lid": learner_id},
            )
            return int(best or 0)

    # ---- question bank ----
    def start_exam(
        self, learner_id: str, mode: str, topic: str | None, question_ids: list[str], now: datetime
    ) -> str:
        run_id = secrets.token_hex(12)
        with self.db.write() as s:
            self._ensure(s, learner_id)
            s.execute(
                "INSERT INTO exam_run (id, learner_id, mode, topic, questions, started_at)"
                " VALUES (:id, :lid, :mode, :topic, :questions, :now)",
                {
                    "id": run_id,
                    "lid": learner_id,
                    "mode": mode,
                    "topic": topic,
                    "questions": " ".join(question_ids),
                    "now": now,
                },
            )
        return run_id

    def exam_run(
        self, learner_id: str | None, run_id: str
    ) -> tuple[ExamRun, dict[int, ExamAnswer]] | None:
        if not learner_id:
            return None
        with self.db.read() as s:
            run = s.first(f"{EXAM_RUN} WHERE id = :id", {"id": run_id})
            if run is None or run.learner_id != learner_id:
                return None
            answers = s.execute(f"{EXAM_ANSWERS} WHERE run_id = :id", {"id": run_id})
            return run, {a.position: a for a in answers}

    def record_exam_answer(
        self,
        learner_id: str,
        run_id: str,
        position: int,
        question: str,
        choice: int,
        correct: bool,
        now: datetime,
    ) -> bool:
        """False if that position was already answered (the first answer stands)."""
        try:
            with self.db.write() as s:
                run = s.first(f"{EXAM_RUN} WHERE id = :id", {"id": run_id})
                if run is None or run.learner_id != learner_id:
                    return False
                answered = "SELECT position FROM exam_answer WHERE run_id = :id AND position = :pos"
                if s.scalar(answered, {"id": run_id, "pos": position}) is not None:
                    return False
                s.execute(
                    "INSERT INTO exam_answer (run_id, position, question, choice, correct)"
                    " VALUES (:id, :pos, :question, :choice, :correct)",
                    {
                        "id": run_id,
                        "pos": position,
                        "question": question,
                        "choice": choice,
                        "correct": correct,
                    },
                )
                s.execute(
                    ANSWER_INSERT,
                    {
                        "learner_id": learner_id,
                        "mode": "exam",
                        "item": question,
                        "kind": run.mode,
                        "given": str(choice),
                        "correct": correct,
                        "ms": None,
                        "at": now,
                        "nonce": f"{run_id}:{position}",
                    },
                )
        except self.db.dialect.integrity_errors:
            return False
        return True

    def last_misses(self, learner_id: str | None) -> list[str]:
        """Questions whose most recent answer was wrong, newest first."""
        if not learner_id:
            return []
        with self.db.read() as s:
            rows = s.all(
                "SELECT item, correct FROM answer WHERE learner_id = :lid AND mode = 'exam'"
                " ORDER BY at DESC, id DESC",
                {"lid": learner_id},
            )
        seen: set[str] = set()
        missed = []
        for item, correct in rows:
            if item in seen:
                continue
            seen.add(item)
            if not correct:
                missed.append(item)
        return missed

    def recent_exam_runs(self, learner_id: str | None, limit: int = 5) -> list[ExamRun]:
        if not learner_id:
            return []
        with self.db.read() as s:
            return s.all(
                f"{EXAM_RUN} WHERE learner_id = :lid ORDER BY started_at DESC LIMIT :limit",
                {"lid": learner_id, "limit": limit},
            )

    # ---- statistics ----
    def progress(self, learner_id: str | None, now: datetime) -> Progress:
        due = sum(1 for c in self.card_dues(learner_id, now) if c.due <= now)
        if not learner_id:
            return Progress(0, 0, due)
        with self.db.read() as s:
            answered, correct = s.first(
                f"SELECT COUNT(id) AS answered, {RIGHT} AS n_right FROM answer"
                " WHERE learner_id = :lid",
                {"lid": learner_id},
            )
        return Progress(int(answered), int(correct), due)

    def port_accuracy(self, learner_id: str | None) -> dict[str, tuple[int, int]]:
        """card → (correct, answered) over the port quiz and speed rounds."""
        out: dict[str, tuple[int, int]] = {}
        if not learner_id:
            return out
        with self.db.read() as s:
            rows = s.all(
                f"SELECT item, {RIGHT} AS n_right, COUNT(id) AS answered FROM answer"
                " WHERE learner_id = :lid AND mode IN ('srs', 'practice', 'speed')"
                " GROUP BY item",
                {"lid": learner_id},
            )
        for item, correct, total in rows:
            out[str(item)] = (int(correct), int(total))
        return out

    def reviews_per_day(
        self, learner_id: str | None, now: datetime, days: int = 14
    ) -> list[tuple[str, int, int]]:
        """(YYYY-MM-DD, answers, correct) for the last `days` days, oldest first."""
        today = now.astimezone(DAY_ZONE).date()
        keys = [(today - timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]
        counts: Counter[str] = Counter()
        right: Counter[str] = Counter()
        if learner_id:
            since = now - timedelta(days=days + 1)
            with self.db.read() as s:
                rows = s.execute(
                    "SELECT at, correct FROM answer WHERE learner_id = :lid AND at >= :since",
                    {"lid": learner_id, "since": since},
                )
                for at, correct in rows:
                    key = aware(at).astimezone(DAY_ZONE).date().isoformat()
                    counts[key] += 1
                    right[key] += 1 if correct else 0
        return [(k, counts[k], right[k]) for k in keys]

    def topic_accuracy(
        self, learner_id: str | None, topics_of: dict[str, tuple[str, ...]]
    ) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        if learner_id:
            with self.db.read() as s:
                rows = s.execute(
                    "SELECT item, correct FROM answer WHERE learner_id = :lid AND mode = 'exam'",
                    {"lid": learner_id},
                )
                for item, correct in rows:
                    for t in topics_of.get(item, ()):
                        out[t][0] += 1 if correct else 0
                        out[t][1] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}

    # ---- classroom rooms ----
    def record_room_answer(
        self,
        learner_id: str,
        item: str,
        kind: str,
        given: str,
        correct: bool,
        nonce: str,
        now: datetime,
    ) -> bool:
        """A live-question answer from a room, for a student who opted in; False if that
        question of that room was already recorded (the nonce is unique per learner)."""
        try:
            with self.db.write() as s:
                self._ensure(s, learner_id)
                s.execute(
                    ANSWER_INSERT,
                    {
                        "learner_id": learner_id,
                        "mode": "room",
                        "item": item,
                        "kind": kind,
                        "given": given,
                        "correct": correct,
                        "ms": None,
                        "at": now,
                        "nonce": nonce,
                    },
                )
        except self.db.dialect.integrity_errors:
            return False
        return True

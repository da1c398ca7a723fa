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
from sqlalchemy import Connection, Integer, Row, cast, func, select, update
from sqlalchemy.exc import IntegrityError

from app.study import srs
from app.study.db import Database
from app.study.models import answer_t, exam_answer_t, exam_run_t, learner_t, secret_t, speed_t

# Rows of the tables in app/study/models.py: read-only, attributes named as the columns.
SpeedRun = Row[Any]  # speed_t
ExamRun = Row[Any]  # exam_run_t
ExamAnswer = Row[Any]  # exam_answer_t

SPEED_SECONDS = 60
SPEED_GRACE_S = 2  # the last click may arrive a moment after the clock hits zero
DAY_ZONE = ZoneInfo("Asia/Tokyo")  # "a day" for reviews per day: the learners' calendar


def _right() -> Any:
    """How many answers were right (a Boolean column summed must be summed as integers)."""
    return func.coalesce(func.sum(cast(answer_t.c.correct, Integer)), 0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC."""
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
        value = select(secret_t.c.value).where(secret_t.c.name == name)
        with self.db.read() as s:
            found = s.scalar(value)
            if found is not None:
                return str(found)
        # Two processes starting at once both get here: the first insert wins, both read it.
        with self.db.write() as s:
            s.execute(self.db.sql.secret_insert, {"name": name, "value": secrets.token_urlsafe(48)})
            return str(s.execute(value).scalar_one())

    def learner_exists(self, learner_id: str) -> bool:
        with self.db.read() as s:
            found = s.scalar(select(learner_t.c.id).where(learner_t.c.id == learner_id))
            return found is not None

    @staticmethod
    def new_learner_id() -> str:
        return str(uuid.uuid4())

    def _ensure(self, s: Connection, learner_id: str) -> None:
        """The learner's row, created unless there (also when another request races us)."""
        s.execute(self.db.sql.learner_insert, {"lid": learner_id, "now": utcnow()})

    # ---- port quiz (the hot path: Core statements, one transaction per answer) ----
    def _dues(
        self, conn: Connection | None, learner_id: str | None, now: datetime
    ) -> list[CardDue]:
        rows: dict[str, Any] = {}
        if conn is not None and learner_id:
            rows = {r.card: r for r in conn.execute(self.db.sql.dues, {"lid": learner_id})}
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
        with self.db.engine.connect() as conn:
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
        q = self.db.sql
        with self.db.write() as conn:
            conn.execute(q.learner_insert, {"lid": learner_id, "now": now})
            if q.learner_lock is not None:
                conn.execute(q.learner_lock, {"lid": learner_id})
            added = conn.execute(
                q.answer_insert,
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
            if added.first() is None:  # this nonce is stored already: a re-sent form
                return None
            if mode == "srs":
                self._review(conn, learner_id, card, srs.rating_for(correct, ms, kind), now)
            return self._dues(conn, learner_id, now)

    def _review(
        self, conn: Connection, learner_id: str, card: str, rating: Rating, now: datetime
    ) -> None:
        q = self.db.sql
        row = conn.execute(q.card_get, {"lid": learner_id, "card": card}).first()
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
        if row is None:
            conn.execute(
                q.card_insert, {"learner_id": learner_id, "card": card, "reps": 1, **values}
            )
        else:
            conn.execute(
                q.card_update,
                {"lid": learner_id, "key_card": card, "reps": row.reps + 1, **values},
            )

    # ---- speed round ----
    def start_speed(self, learner_id: str, now: datetime) -> str:
        run_id = secrets.token_hex(12)
        with self.db.write() as s:
            self._ensure(s, learner_id)
            s.execute(
                speed_t.insert().values(
                    id=run_id, learner_id=learner_id, started_at=now, score=0, answered=0
                )
            )
        return run_id

    def speed_run(self, learner_id: str | None, run_id: str) -> SpeedRun | None:
        if not learner_id:
            return None
        with self.db.read() as s:
            run = s.execute(select(speed_t).where(speed_t.c.id == run_id)).first()
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
        except IntegrityError:  # the same form sent twice at once: the other one counted
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
            run = s.execute(
                select(speed_t).where(speed_t.c.id == run_id).with_for_update()
            ).first()
            if run is None or run.learner_id != learner_id:
                return False
            if self.speed_left(run, now) < -SPEED_GRACE_S:
                return False
            if (
                s.scalar(
                    select(answer_t.c.id).where(
                        answer_t.c.learner_id == learner_id, answer_t.c.nonce == nonce
                    )
                )
                is not None
            ):
                return False
            s.execute(
                answer_t.insert().values(
                    learner_id=learner_id,
                    mode="speed",
                    item=card,
                    kind=kind,
                    given=given[:200],
                    correct=correct,
                    ms=ms,
                    at=now,
                    nonce=nonce,
                )
            )
            s.execute(
                update(speed_t)
                .where(speed_t.c.id == run_id)
                .values(
                    answered=speed_t.c.answered + 1,
                    score=speed_t.c.score + (1 if correct else 0),
                )
            )
            return True

    def speed_best(self, learner_id: str | None) -> int:
        if not learner_id:
            return 0
        with self.db.read() as s:
            best = s.scalar(
                select(func.max(speed_t.c.score)).where(speed_t.c.learner_id == learner_id)
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
                exam_run_t.insert().values(
                    id=run_id,
                    learner_id=learner_id,
                    mode=mode,
                    topic=topic,
                    questions=" ".join(question_ids),
                    started_at=now,
                )
            )
        return run_id

    def exam_run(
        self, learner_id: str | None, run_id: str
    ) -> tuple[ExamRun, dict[int, ExamAnswer]] | None:
        if not learner_id:
            return None
        with self.db.read() as s:
            run = s.execute(select(exam_run_t).where(exam_run_t.c.id == run_id)).first()
            if run is None or run.learner_id != learner_id:
                return None
            answers = s.execute(select(exam_answer_t).where(exam_answer_t.c.run_id == run_id))
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
                run = s.execute(select(exam_run_t).where(exam_run_t.c.id == run_id)).first()
                if run is None or run.learner_id != learner_id:
                    return False
                answered = select(exam_answer_t.c.position).where(
                    exam_answer_t.c.run_id == run_id, exam_answer_t.c.position == position
                )
                if s.scalar(answered) is not None:
                    return False
                s.execute(
                    exam_answer_t.insert().values(
                        run_id=run_id,
                        position=position,
                        question=question,
                        choice=choice,
                        correct=correct,
                    )
                )
                s.execute(
                    answer_t.insert().values(
                        learner_id=learner_id,
                        mode="exam",
                        item=question,
                        kind=run.mode,
                        given=str(choice),
                        correct=correct,
                        ms=None,
                        at=now,
                        nonce=f"{run_id}:{position}",
                    )
                )
        except IntegrityError:
            return False
        return True

    def last_misses(self, learner_id: str | None) -> list[str]:
        """Questions whose most recent answer was wrong, newest first."""
        if not learner_id:
            return []
        with self.db.read() as s:
            rows = s.execute(
                select(answer_t.c.item, answer_t.c.correct)
                .where(answer_t.c.learner_id == learner_id, answer_t.c.mode == "exam")
                .order_by(answer_t.c.at.desc(), answer_t.c.id.desc())
            ).all()
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
            return list(
                s.execute(
                    select(exam_run_t)
                    .where(exam_run_t.c.learner_id == learner_id)
                    .order_by(exam_run_t.c.started_at.desc())
                    .limit(limit)
                )
            )

    # ---- statistics ----
    def progress(self, learner_id: str | None, now: datetime) -> Progress:
        due = sum(1 for c in self.card_dues(learner_id, now) if c.due <= now)
        if not learner_id:
            return Progress(0, 0, due)
        with self.db.read() as s:
            answered, correct = s.execute(
                select(func.count(answer_t.c.id), _right()).where(
                    answer_t.c.learner_id == learner_id
                )
            ).one()
        return Progress(int(answered), int(correct), due)

    def port_accuracy(self, learner_id: str | None) -> dict[str, tuple[int, int]]:
        """card → (correct, answered) over the port quiz and speed rounds."""
        out: dict[str, tuple[int, int]] = {}
        if not learner_id:
            return out
        with self.db.read() as s:
            rows = s.execute(
                select(answer_t.c.item, _right(), func.count(answer_t.c.id))
                .where(
                    answer_t.c.learner_id == learner_id,
                    answer_t.c.mode.in_(("srs", "practice", "speed")),
                )
                .group_by(answer_t.c.item)
            ).all()
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
                    select(answer_t.c.at, answer_t.c.correct).where(
                        answer_t.c.learner_id == learner_id, answer_t.c.at >= since
                    )
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
                    select(answer_t.c.item, answer_t.c.correct).where(
                        answer_t.c.learner_id == learner_id, answer_t.c.mode == "exam"
                    )
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
                    answer_t.insert().values(
                        learner_id=learner_id,
                        mode="room",
                        item=item,
                        kind=kind,
                        given=given,
                        correct=correct,
                        ms=None,
                        at=now,
                        nonce=nonce,
                    )
                )
        except IntegrityError:
            return False
        return True

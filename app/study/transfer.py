"""Progress export and import: a versioned JSON document, validated before anything changes."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select

from app.study.content import Content
from app.study.models import Answer, CardState, ExamAnswer, ExamRun, SpeedRun
from app.study.store import Store, aware, utcnow

FORMAT = "mailflow-lab/study-progress"
VERSION = 1
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 200_000
QUESTION_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")

Short = Annotated[str, Field(max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerIn(_Strict):
    mode: Literal["srs", "practice", "speed", "exam", "room"]  # room: a classroom poll
    item: Annotated[str, Field(min_length=1, max_length=60)]
    kind: Annotated[str, Field(max_length=20)]
    given: Short
    correct: bool
    ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    at: datetime
    nonce: Annotated[str, Field(max_length=40)] | None = None


class CardIn(_Strict):
    card: str
    state: Annotated[int, Field(ge=1, le=3)]
    step: Annotated[int, Field(ge=0, le=100)] | None = None
    stability: Annotated[float, Field(ge=0)] | None = None
    difficulty: Annotated[float, Field(ge=0, le=11)] | None = None
    due: datetime
    last_review: datetime | None = None
    reps: Annotated[int, Field(ge=0)] = 0


class SpeedIn(_Strict):
    started_at: datetime
    score: Annotated[int, Field(ge=0, le=10_000)]
    answered: Annotated[int, Field(ge=0, le=10_000)]


class ExamAnswerIn(_Strict):
    position: Annotated[int, Field(ge=0, le=1000)]
    question: Annotated[str, Field(max_length=60)]
    choice: Annotated[int, Field(ge=0, le=3)]
    correct: bool


class ExamRunIn(_Strict):
    mode: Literal["topic", "mini", "review"]
    topic: Annotated[str, Field(max_length=40)] | None = None
    questions: Annotated[list[Annotated[str, Field(max_length=60)]], Field(max_length=1000)]
    started_at: datetime
    answers: list[ExamAnswerIn]


class ProgressFile(_Strict):
    format: Literal["mailflow-lab/study-progress"]
    version: Literal[1]
    exported_at: datetime
    answers: Annotated[list[AnswerIn], Field(max_length=MAX_ROWS)]
    cards: list[CardIn]
    speed_runs: Annotated[list[SpeedIn], Field(max_length=MAX_ROWS)]
    exam_runs: Annotated[list[ExamRunIn], Field(max_length=MAX_ROWS)]


class ImportProblem(ValueError):
    """Why a file was refused; `code` picks the message shown to the learner."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def _iso(dt: datetime | None) -> str | None:
    return aware(dt).isoformat() if dt else None


def export(store: Store, learner_id: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": utcnow().isoformat(),
        "answers": [],
        "cards": [],
        "speed_runs": [],
        "exam_runs": [],
    }
    if not learner_id:
        return doc
    with store.db.read() as s:
        for a in s.scalars(
            select(Answer).where(Answer.learner_id == learner_id).order_by(Answer.id)
        ):
            doc["answers"].append(
                {
                    "mode": a.mode,
                    "item": a.item,
                    "kind": a.kind,
                    "given": a.given,
                    "correct": a.correct,
                    "ms": a.ms,
                    "at": _iso(a.at),
                    "nonce": a.nonce,
                }
            )
        for c in s.scalars(select(CardState).where(CardState.learner_id == learner_id)):
            doc["cards"].append(
                {
                    "card": c.card,
                    "state": c.state,
                    "step": c.step,
                    "stability": c.stability,
                    "difficulty": c.difficulty,
                    "due": _iso(c.due),
                    "last_review": _iso(c.last_review),
                    "reps": c.reps,
                }
            )
        for r in s.scalars(
            select(SpeedRun).where(SpeedRun.learner_id == learner_id).order_by(SpeedRun.started_at)
        ):
            doc["speed_runs"].append(
                {"started_at": _iso(r.started_at), "score": r.score, "answered": r.answered}
            )
        for run in s.scalars(
            select(ExamRun).where(ExamRun.learner_id == learner_id).order_by(ExamRun.started_at)
        ):
            answers = s.scalars(
                select(ExamAnswer).where(ExamAnswer.run_id == run.id).order_by(ExamAnswer.position)
            )
            doc["exam_runs"].append(
                {
                    "mode": run.mode,
                    "topic": run.topic,
                    "questions": run.questions.split(),
                    "started_at": _iso(run.started_at),
                    "answers": [
                        {
                            "position": a.position,
                            "question": a.question,
                            "choice": a.choice,
                            "correct": a.correct,
                        }
                        for a in answers
                    ],
                }
            )
    return doc


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse(raw: bytes, content: Content) -> ProgressFile:
    """Validate an uploaded file completely; raise ImportProblem with a reason."""
    if not raw.strip():
        raise ImportProblem("empty")
    if len(raw) > MAX_BYTES:
        raise ImportProblem("too_big")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ImportProblem("not_json") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportProblem("foreign")
    if data.get("version") != VERSION:
        raise ImportProblem("version", str(data.get("version"))[:20])
    try:
        doc = ProgressFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ImportProblem("invalid", f"{where}: {first['msg']}"[:200]) from None
    cards = [c.card for c in doc.cards]
    unknown = [c for c in cards if c not in content.cards]
    if unknown or len(set(cards)) != len(cards):
        raise ImportProblem("invalid", f"cards: {(unknown or cards)[0]}")
    for run in doc.exam_runs:
        # A question since removed from the bank is kept in the history and skipped when
        # shown (as in the database), so a file exported earlier still imports.
        bad = [q for q in run.questions if not QUESTION_ID.fullmatch(q)]
        if bad:
            raise ImportProblem("invalid", f"exam_runs: question id {bad[0][:40]!r}")
        for a in run.answers:
            if a.position >= len(run.questions) or run.questions[a.position] != a.question:
                raise ImportProblem("invalid", f"exam_runs: answer {a.position}")
    nonces = [a.nonce for a in doc.answers if a.nonce]
    if len(set(nonces)) != len(nonces):
        raise ImportProblem("invalid", "answers: repeated nonce")
    return doc


def apply(store: Store, learner_id: str, doc: ProgressFile) -> None:
    """Replace the learner's progress with the file's, in one transaction."""
    with store.db.write() as s:
        store._ensure(s, learner_id)
        runs = select(ExamRun.id).where(ExamRun.learner_id == learner_id)
        s.execute(delete(ExamAnswer).where(ExamAnswer.run_id.in_(runs)))
        for model in (ExamRun, SpeedRun, CardState, Answer):
            s.execute(delete(model).where(model.learner_id == learner_id))
        s.add_all(
            Answer(
                learner_id=learner_id,
                mode=a.mode,
                item=a.item,
                kind=a.kind,
                given=a.given,
                correct=a.correct,
                ms=a.ms,
                at=_utc(a.at),
                nonce=a.nonce,
            )
            for a in doc.answers
        )
        s.add_all(
            CardState(
                learner_id=learner_id,
                card=c.card,
                state=c.state,
                step=c.step,
                stability=c.stability,
                difficulty=c.difficulty,
                due=_utc(c.due),
                last_review=_utc(c.last_review) if c.last_review else None,
                reps=c.reps,
            )
            for c in doc.cards
        )
        # Run ids are global keys: fresh ones, so one file can be imported in two browsers.
        s.add_all(
            SpeedRun(
                id=secrets.token_hex(12),
                learner_id=learner_id,
                started_at=_utc(r.started_at),
                score=r.score,
                answered=r.answered,
            )
            for r in doc.speed_runs
        )
        answers = []
        for run in doc.exam_runs:
            run_id = secrets.token_hex(12)
            s.add(
                ExamRun(
                    id=run_id,
                    learner_id=learner_id,
                    mode=run.mode,
                    topic=run.topic,
                    questions=" ".join(run.questions),
                    started_at=_utc(run.started_at),
                )
            )
            answers += [
                ExamAnswer(
                    run_id=run_id,
                    position=a.position,
                    question=a.question,
                    choice=a.choice,
                    correct=a.correct,
                )
                for a in run.answers
            ]
        s.flush()  # the runs first: no ORM relationship tells SQLAlchemy the FK order
        s.add_all(answers)

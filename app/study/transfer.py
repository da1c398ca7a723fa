"""Progress export and import: a versioned JSON document, validated before anything changes.

An uploaded file is checked in layers, cheapest first, so no input can make the parser
or a later page fail: its size; its nesting depth (by scanning brackets, before any
parsing); then a parse that refuses duplicate keys, NaN/Infinity, over-long numbers
and non-finite floats; then a strict schema (true/false only for booleans, ranges for
every number, dates between 2000 and 2100). What an earlier version exported about
content that no longer exists (answers to removed questions, removed port cards, exam
runs over removed questions) is skipped and counted, not refused.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from app.study.content import Content
from app.study.statements import (
    ANSWER_INSERT,
    CARD_COLUMNS,
    CARD_INSERT,
    EXAM_ANSWER_INSERT,
    EXAM_RUN_INSERT,
    SPEED_RUN_INSERT,
)
from app.study.store import Store, aware, utcnow

FORMAT = "mailflow-lab/study-progress"
VERSION = 1
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 200_000
MAX_DEPTH = 8  # the format nests 5 deep (file, exam_runs, run, answers, answer)
MAX_NUMBER_CHARS = 24  # longer than any number the format holds
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # leaves room for intervals added to `due`
EXAM_KINDS = ("topic", "mini", "review")

Short = Annotated[str, Field(max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9._:-]+$")]


def _in_range(dt: datetime) -> datetime:
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"date must be between {EARLIEST.year} and {LATEST.year}")
    return dt


Stamp = Annotated[datetime, AfterValidator(_in_range)]


class _Strict(BaseModel):
    # strict: "yes" is not a boolean, "3" is not a number, 1700000000 is not a date.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class AnswerIn(_Strict):
    mode: Literal["srs", "practice", "speed", "exam", "room"]  # room: a classroom poll
    item: Id
    kind: Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[a-z0-9_]+$")]
    given: Short
    correct: bool
    ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    at: Stamp
    nonce: Annotated[str, Field(max_length=40)] | None = None


class CardIn(_Strict):
    card: Id
    state: Annotated[int, Field(ge=1, le=3)]
    step: Annotated[int, Field(ge=0, le=100)] | None = None
    stability: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    difficulty: Annotated[float, Field(ge=0, le=11)] | None = None
    due: Stamp
    last_review: Stamp | None = None
    reps: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class SpeedIn(_Strict):
    started_at: Stamp
    score: Annotated[int, Field(ge=0, le=10_000)]
    answered: Annotated[int, Field(ge=0, le=10_000)]


class ExamAnswerIn(_Strict):
    position: Annotated[int, Field(ge=0, le=1000)]
    question: Id
    choice: Annotated[int, Field(ge=0, le=3)]
    correct: bool


class ExamRunIn(_Strict):
    mode: Literal["topic", "mini", "review"]
    topic: Annotated[str, Field(max_length=40)] | None = None
    questions: Annotated[list[Id], Field(max_length=1000)]
    started_at: Stamp
    answers: Annotated[list[ExamAnswerIn], Field(max_length=1000)]


class ProgressFile(_Strict):
    format: Literal["mailflow-lab/study-progress"]
    version: Literal[1]
    exported_at: Stamp
    answers: Annotated[list[AnswerIn], Field(max_length=MAX_ROWS)]
    cards: Annotated[list[CardIn], Field(max_length=MAX_ROWS)]
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
    lid = {"lid": learner_id}
    with store.db.read() as s:
        for a in s.execute(
            "SELECT mode, item, kind, given, correct, ms, at, nonce FROM answer"
            " WHERE learner_id = :lid ORDER BY id",
            lid,
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
        # In the table's own order (no ORDER BY), as before: a file lists cards as stored.
        for c in s.execute(
            f"SELECT card, {CARD_COLUMNS} FROM card_state WHERE learner_id = :lid", lid
        ):
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
        for r in s.execute(
            "SELECT started_at, score, answered FROM speed_run"
            " WHERE learner_id = :lid ORDER BY started_at",
            lid,
        ):
            doc["speed_runs"].append(
                {"started_at": _iso(r.started_at), "score": r.score, "answered": r.answered}
            )
        runs = s.all(
            "SELECT id, mode, topic, questions, started_at FROM exam_run"
            " WHERE learner_id = :lid ORDER BY started_at",
            lid,
        )
        for run in runs:
            answers = s.execute(
                "SELECT position, question, choice, correct FROM exam_answer"
                " WHERE run_id = :id ORDER BY position",
                {"id": run.id},
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


@dataclass
class Parsed:
    """A validated file, less what refers to content that no longer exists."""

    doc: ProgressFile
    skipped: dict[str, int] = field(default_factory=dict)  # "answers"/"cards"/"exam_runs"

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _check_depth(raw: bytes) -> None:
    """Refuse deep nesting before parsing: a scan of the brackets outside strings."""
    depth = 0
    for b in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if b in b"[{" else -1
        if depth > MAX_DEPTH:
            raise ImportProblem("invalid", f"nested more than {MAX_DEPTH} levels deep")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # json.loads would keep the last one silently
            raise ImportProblem("invalid", f"duplicate key {key[:40]!r}")
        obj[key] = value
    return obj


def _number(text: str, kind: type) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise ImportProblem("invalid", f"number too long ({len(text)} characters)")
    value = kind(text)
    if kind is float and not math.isfinite(value):
        raise ImportProblem("invalid", f"number out of range: {text}")
    return value


def _constant(name: str) -> Any:
    raise ImportProblem("invalid", f"{name} is not a number JSON allows")


def _load(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImportProblem("not_json") from None
    _check_depth(raw)
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=lambda t: _number(t, int),
            parse_float=lambda t: _number(t, float),
            parse_constant=_constant,
        )
    except (json.JSONDecodeError, RecursionError):
        raise ImportProblem("not_json") from None


def parse(raw: bytes, content: Content) -> Parsed:
    """Validate an uploaded file completely; raise ImportProblem with a reason.

    CPU-bound for a large file: call it from a worker thread, not the event loop."""
    if not raw.strip():
        raise ImportProblem("empty")
    if len(raw) > MAX_BYTES:
        raise ImportProblem("too_big")
    data = _load(raw)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportProblem("foreign")
    if data.get("version") != VERSION:
        raise ImportProblem("version", str(data.get("version"))[:20])
    try:
        # The same bytes again, now against the strict schema (JSON mode: dates as text).
        doc = ProgressFile.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ImportProblem("invalid", f"{where}: {first['msg']}"[:200]) from None
    return _against_content(doc, content)


def _against_content(doc: ProgressFile, content: Content) -> Parsed:
    cards = [c.card for c in doc.cards]
    if len(set(cards)) != len(cards):
        raise ImportProblem("invalid", "cards: a card appears twice")
    nonces = [a.nonce for a in doc.answers if a.nonce]
    if len(set(nonces)) != len(nonces):
        raise ImportProblem("invalid", "answers: repeated nonce")
    for i, a in enumerate(doc.answers):
        if (a.mode == "exam") != (a.kind in EXAM_KINDS):
            raise ImportProblem("invalid", f"answers.{i}.kind: {a.kind} does not fit {a.mode}")
    for i, run in enumerate(doc.exam_runs):
        if run.topic is not None and run.topic not in content.topics:
            raise ImportProblem("invalid", f"exam_runs.{i}.topic: unknown topic {run.topic}")
        positions = [a.position for a in run.answers]
        if len(set(positions)) != len(positions):
            # One answer per position (the table's key): refused here, not by the database.
            raise ImportProblem("invalid", f"exam_runs.{i}: a position answered twice")
        for a in run.answers:
            if a.position >= len(run.questions) or run.questions[a.position] != a.question:
                raise ImportProblem("invalid", f"exam_runs.{i}: answer {a.position}")

    def known(a: AnswerIn) -> bool:
        if a.mode == "room":
            # A classroom poll: a predicted line of a scenario, or a bank question while
            # the bank still has it.
            return a.item.startswith("predict:") or a.item in content.questions
        return a.item in (content.questions if a.mode == "exam" else content.cards)

    kept = Parsed(
        doc.model_copy(
            update={
                "answers": [a for a in doc.answers if known(a)],
                "cards": [c for c in doc.cards if c.card in content.cards],
                "exam_runs": [
                    r for r in doc.exam_runs if all(q in content.questions for q in r.questions)
                ],
            }
        )
    )
    for name in ("answers", "cards", "exam_runs"):
        gone = len(getattr(doc, name)) - len(getattr(kept.doc, name))
        if gone:
            kept.skipped[name] = gone
    return kept


def apply(store: Store, learner_id: str, doc: ProgressFile) -> None:
    """Replace the learner's progress with the file's, in one transaction."""
    with store.db.write() as s:
        store._ensure(s, learner_id)
        lid = {"lid": learner_id}
        s.execute(
            "DELETE FROM exam_answer"
            " WHERE run_id IN (SELECT id FROM exam_run WHERE learner_id = :lid)",
            lid,
        )
        for table in ("exam_run", "speed_run", "card_state", "answer"):
            s.execute(f"DELETE FROM {table} WHERE learner_id = :lid", lid)
        # One executemany per table (skipped when the file has none).
        rows: list[tuple[str, list[dict[str, Any]]]] = [
            (
                ANSWER_INSERT,
                [
                    {
                        "learner_id": learner_id,
                        "mode": a.mode,
                        "item": a.item,
                        "kind": a.kind,
                        "given": a.given,
                        "correct": a.correct,
                        "ms": a.ms,
                        "at": _utc(a.at),
                        "nonce": a.nonce,
                    }
                    for a in doc.answers
                ],
            ),
            (
                CARD_INSERT,
                [
                    {
                        "lid": learner_id,
                        "card": c.card,
                        "state": c.state,
                        "step": c.step,
                        "stability": c.stability,
                        "difficulty": c.difficulty,
                        "due": _utc(c.due),
                        "last_review": _utc(c.last_review) if c.last_review else None,
                        "reps": c.reps,
                    }
                    for c in doc.cards
                ],
            ),
            # Run ids are global keys: fresh ones, so one file can be imported in two browsers.
            (
                SPEED_RUN_INSERT,
                [
                    {
                        "id": secrets.token_hex(12),
                        "learner_id": learner_id,
                        "started_at": _utc(r.started_at),
                        "score": r.score,
                        "answered": r.answered,
                    }
                    for r in doc.speed_runs
                ],
            ),
        ]
        exam_runs, exam_answers = [], []
        for run in doc.exam_runs:
            run_id = secrets.token_hex(12)
            exam_runs.append(
                {
                    "id": run_id,
                    "learner_id": learner_id,
                    "mode": run.mode,
                    "topic": run.topic,
                    "questions": " ".join(run.questions),
                    "started_at": _utc(run.started_at),
                }
            )
            exam_answers += [
                {
                    "run_id": run_id,
                    "position": a.position,
                    "question": a.question,
                    "choice": a.choice,
                    "correct": a.correct,
                }
                for a in run.answers
            ]
        rows += [(EXAM_RUN_INSERT, exam_runs), (EXAM_ANSWER_INSERT, exam_answers)]  # runs first
        for insert, values in rows:
            if values:
                s.executemany(insert, values)

"""Live questions: "what does the client send next?" from the predict engine, judged by
the real protocol cores, or an exam question from the bank on the scenario's topics.

Building a predict poll replays the recording into a core for each choice: CPU work, so
callers run `predict_poll` in a worker thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.events import Event
from app.rooms.model import Poll
from app.study.content import Content, Question
from app.web.predict_game import PredictState, ask, candidates
from app.web.predict_replay import is_command


def next_command(events: Sequence[Event], step: int) -> int | None:
    """Index of the first client command not yet shown at `step` (lines revealed)."""
    for i in range(step, len(events)):
        if is_command(events[i]):
            return i
    return None


def predict_poll(poll_id: int, events: Sequence[Event], step: int, seed: str) -> Poll | None:
    """Choices from the predict engine for the next client line; None if none is left."""
    point = next_command(events, step)
    if point is None:
        return None
    lines = candidates(PredictState((point,)), events, seed)
    recorded = events[point].text
    right, replies = [], []
    for line in lines:
        answer = ask(events, point, line)
        right.append(line == recorded or (answer is not None and answer.ok))
        replies.append(answer.text if answer is not None else "")
    return Poll(
        id=poll_id,
        kind="predict",
        step=step,
        choices={"ja": list(lines), "en": list(lines)},
        right=right,
        point=point,
        replies=replies,
    )


def exam_questions(content: Content, topics: Sequence[str]) -> list[Question]:
    """The bank's questions on the scenario's topics, each once, in bank order."""
    seen: dict[str, Question] = {}
    for topic in topics:
        for q in content.questions_in(topic):
            seen.setdefault(q.id, q)
    return list(seen.values())


def exam_poll(poll_id: int, question: Question, step: int) -> Poll:
    return Poll(
        id=poll_id,
        kind="exam",
        step=step,
        choices={lang: list(question.choices[lang]) for lang in ("ja", "en")},
        right=[i == question.answer for i in range(len(question.choices["ja"]))],
        qid=question.id,
    )


def tally(poll: Poll, answers: dict[str, bytes]) -> list[int]:
    counts = [0] * len(poll.right)
    for raw in answers.values():
        try:
            choice = int(raw)
        except ValueError:
            continue
        if 0 <= choice < len(counts):
            counts[choice] += 1
    return counts


def most_chosen_wrong(poll: Poll, counts: list[int]) -> int | None:
    wrong = [(n, i) for i, n in enumerate(counts) if not poll.right[i] and n > 0]
    return max(wrong, key=lambda t: (t[0], -t[1]))[1] if wrong else None

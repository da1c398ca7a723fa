"""FSRS scheduling of the port cards (the `fsrs` package), kept apart from storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fsrs import Card, Rating, Scheduler, State

# Answers at least this fast (and right) count as Easy: the port is known by heart.
FAST_MS = {
    "mc_port2svc": 4000,
    "mc_svc2port": 4000,
    "port2svc": 7000,
    "svc2port": 6000,
    "usecase": 9000,
}


def make_scheduler(fuzz: bool = True) -> Scheduler:
    return Scheduler(enable_fuzzing=fuzz)


def rating_for(correct: bool, ms: int | None, kind: str) -> Rating:
    """A miss is Again; right is Good; right and fast is Easy."""
    if not correct:
        return Rating.Again
    if ms is not None and ms <= FAST_MS.get(kind, 5000):
        return Rating.Easy
    return Rating.Good


@dataclass
class CardFields:
    """The columns of a card_state row, as plain values."""

    state: int
    step: int | None
    stability: float | None
    difficulty: float | None
    due: datetime
    last_review: datetime | None


# fsrs sleeps a millisecond to make time-based card ids unique unless given one; our cards
# are identified by (learner, port) in the database, so a constant id avoids that sleep.
CARD_ID = 1


def new_card(now: datetime) -> Card:
    return Card(card_id=CARD_ID, due=now)


def to_card(f: CardFields) -> Card:
    return Card(
        card_id=CARD_ID,
        state=State(f.state),
        step=f.step,
        stability=f.stability,
        difficulty=f.difficulty,
        due=f.due,
        last_review=f.last_review,
    )


def from_card(card: Card) -> CardFields:
    return CardFields(
        state=int(card.state),
        step=card.step,
        stability=card.stability,
        difficulty=card.difficulty,
        due=card.due,
        last_review=card.last_review,
    )


def review(
    scheduler: Scheduler, fields: CardFields | None, rating: Rating, now: datetime
) -> CardFields:
    card = to_card(fields) if fields else new_card(now)
    updated, _log = scheduler.review_card(card, rating, review_datetime=now)
    return from_card(updated)

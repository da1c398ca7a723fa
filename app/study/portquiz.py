"""Port quiz questions: which card to ask, in which form, and whether the answer is right."""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass

from app.study.content import Content, PortCard, UseCase
from app.study.normalize import matches_service, parse_port

TYPED = ("port2svc", "svc2port")
CHOICE = ("mc_port2svc", "mc_svc2port", "usecase")
KINDS = TYPED + CHOICE


@dataclass(frozen=True)
class PortQuestion:
    card: str  # card id (the port, as text)
    kind: str
    options: tuple[int, ...]  # multiple choice: every option is a port number
    usecase: str | None
    mode: str  # srs | practice | speed
    issued_ms: int
    nonce: str

    def to_token(self) -> dict[str, object]:
        return {
            "c": self.card,
            "k": self.kind,
            "o": list(self.options),
            "u": self.usecase,
            "m": self.mode,
            "t": self.issued_ms,
            "n": self.nonce,
        }

    @classmethod
    def from_token(cls, data: object, content: Content) -> PortQuestion | None:
        """The question back from its (already signature-checked) token, or None."""
        if not isinstance(data, dict):
            return None
        try:
            q = cls(
                str(data["c"]),
                str(data["k"]),
                tuple(int(o) for o in data["o"]),
                None if data["u"] is None else str(data["u"]),
                str(data["m"]),
                int(data["t"]),
                str(data["n"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if q.card not in content.cards or q.kind not in KINDS:
            return None
        return q


@dataclass(frozen=True)
class Outcome:
    correct: bool
    given: str
    expected_port: int


class Unreadable(ValueError):
    """The answer cannot be graded (empty, or letters where a number is asked)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _kind_for(card_reps: int, rng: random.Random, speed: bool) -> str:
    if speed:
        return rng.choice(("mc_port2svc", "mc_svc2port"))
    if card_reps == 0:
        return rng.choice(("mc_port2svc", "mc_svc2port"))  # recognise before recalling
    return rng.choice(KINDS)


def make_question(
    content: Content, card: PortCard, mode: str, reps: int = 0, rng: random.Random | None = None
) -> PortQuestion:
    rng = rng or random.Random()
    kind = _kind_for(reps, rng, speed=mode == "speed")
    usecase: UseCase | None = None
    if kind == "usecase":
        cases = [u for u in content.usecases if u.port == card.port]
        if cases:
            usecase = rng.choice(cases)
        else:
            kind = "mc_svc2port"
    options: tuple[int, ...] = ()
    if kind in CHOICE:
        others = [c.port for c in content.cards.values() if c.port != card.port]
        if usecase is not None:
            # A port that fits the situation just as well (465 for "send despite OP25B")
            # would be graded wrong although it is right: it is never a distractor.
            right = content.right_ports(usecase)
            picked = rng.sample([p for p in others if p not in right], 3)
        else:
            # Two confusable mail ports and one non-mail distractor.
            picked = [*rng.sample(others, 2), rng.choice(content.distractors).port]
        opts = [card.port, *picked]
        rng.shuffle(opts)
        options = tuple(opts)
    case_id = usecase.id if usecase else None
    return PortQuestion(card.id, kind, options, case_id, mode, now_ms(), secrets.token_hex(8))


def grade(content: Content, q: PortQuestion, answer: str) -> Outcome:
    card = content.cards[q.card]
    answer = answer.strip()
    if not answer:
        raise Unreadable("empty")
    if len(answer) > 100:
        raise Unreadable("long")
    if q.kind in CHOICE:
        try:
            picked = int(answer)
        except ValueError:
            raise Unreadable("choice") from None
        if picked not in q.options:
            raise Unreadable("choice")
        return Outcome(picked == card.port, str(picked), card.port)
    if q.kind == "svc2port":
        port = parse_port(answer)
        if port is None:
            raise Unreadable("number")
        return Outcome(port == card.port, str(port), card.port)
    return Outcome(matches_service(answer, card), answer, card.port)


def label_for_port(content: Content, port: int, lang: str) -> str:
    card = content.card_by_port(port)
    if card:
        return card.label[lang]
    for d in content.distractors:
        if d.port == port:
            return d.label[lang]
    return str(port)


def service_for_port(content: Content, port: int) -> str:
    card = content.card_by_port(port)
    if card:
        return card.service
    return next((d.service for d in content.distractors if d.port == port), str(port))

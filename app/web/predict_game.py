"""Predict the next line: which client commands are asked, the candidates offered,
and the learner's answers with the server's real verdict.

A guess is right when the protocol's state machine accepts it (app/web/predict_replay),
not when it equals the recording: STAT is as right as LIST after a POP3 login.
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.digits import is_digits
from app.events import Event
from app.web.predict_replay import MAX_LINE, Answer, is_command, probe_at

log = logging.getLogger("mailflow.predict")
MAX_CANDIDATES = 4


class BadGuess(ValueError):
    """The form did not carry a usable answer; `code` picks the message shown."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Turn:
    point: int  # index of the recorded client line this question was about
    line: str  # what the learner sent
    typed: bool
    answer: Answer | None  # None: the core could not answer (never expected)
    matched: bool = False  # exactly the recorded line (which a server may have refused)

    @property
    def right(self) -> bool:
        return self.matched or (self.answer is not None and self.answer.ok)


@dataclass
class PredictState:
    """A learner's progress through one recording (kept in the FlowSession)."""

    points: tuple[int, ...]
    turns: list[Turn] = field(default_factory=list)
    candidates: dict[int, list[str]] = field(default_factory=dict)

    @property
    def number(self) -> int:
        """0-based number of the question being asked (== answered so far)."""
        return len(self.turns)

    @property
    def done(self) -> bool:
        return self.number >= len(self.points)

    @property
    def point(self) -> int | None:
        return None if self.done else self.points[self.number]

    def revealed(self, total: int) -> int:
        """How many recorded events are on screen: everything before the open question."""
        return total if self.done else self.points[self.number]

    @property
    def score(self) -> int:
        return sum(t.right for t in self.turns)


def new_state(events: Sequence[Event]) -> PredictState:
    return PredictState(tuple(i for i, e in enumerate(events) if is_command(e)))


def ask(events: Sequence[Event], index: int, line: str) -> Answer | None:
    """The server's answer to `line` in place of events[index]; None only if a core broke."""
    try:
        return probe_at(events, index).ask(line)
    except Exception:  # a learner's line must never take the page down
        log.exception("core failed on a predicted line at event %s", index)
        return None


# -- the candidates --------------------------------------------------------------------


def candidates(state: PredictState, events: Sequence[Event], seed: str) -> list[str]:
    """3–4 commands for the open question: the recorded one, ones the server would
    refuse here, and sometimes another it would accept. Fixed per question."""
    point = state.point
    if point is None:
        return []
    if point not in state.candidates:
        state.candidates[point] = _pick(events, point, random.Random(f"{seed}:{point}"))
    return state.candidates[point]


def _pick(events: Sequence[Event], index: int, rng: random.Random) -> list[str]:
    recorded = events[index].text
    verb = _verb(recorded, events[index].protocol)
    pool = [
        c for c in dict.fromkeys(_pool(events, index)) if _verb(c, events[index].protocol) != verb
    ]
    rng.shuffle(pool)
    wrong, right = [], []
    for line in pool:
        answer = ask(events, index, line)
        (right if answer is not None and answer.ok else wrong).append(line)
    chosen = [recorded, *wrong[:2]]
    rest = right[:1] + wrong[2:]
    chosen += rest[: MAX_CANDIDATES - len(chosen)]
    rng.shuffle(chosen)
    return chosen


def _verb(line: str, protocol: str) -> str:
    words = line.split(" ")
    if protocol == "IMAP":
        words = words[1:]
        if words and words[0].upper() == "UID":
            return " ".join(words[:2]).upper()
    return words[0].upper() if words else ""


def _session(events: Sequence[Event], index: int) -> list[Event]:
    return [e for e in events if e.session == events[index].session]


def _arg_of(session: list[Event], verb: str, default: str) -> str:
    """The argument the client gave `verb` somewhere in this session, for realistic choices."""
    for e in session:
        if e.direction == "c2s" and e.text.upper().startswith(verb + " "):
            return e.text[len(verb) + 1 :]
    return default


def _pool(events: Sequence[Event], index: int) -> list[str]:
    session = _session(events, index)
    protocol = events[index].protocol
    if protocol in ("SMTP", "LMTP"):
        helo = _arg_of(session, "EHLO", _arg_of(session, "LHLO", "client.example"))
        plain = base64.b64encode(b"\0alice@a.example\0alice-pass").decode()
        greet = [f"LHLO {helo}"] if protocol == "LMTP" else [f"EHLO {helo}", f"HELO {helo}"]
        return [
            *greet,
            "STARTTLS",
            f"AUTH {_arg_of(session, 'AUTH', 'PLAIN ' + plain)}",
            f"MAIL {_arg_of(session, 'MAIL', 'FROM:<alice@a.example>')}",
            f"RCPT {_arg_of(session, 'RCPT', 'TO:<bob@b.example>')}",
            "DATA",
            "QUIT",
        ]
    if protocol == "POP3":
        return [
            "CAPA",
            "STLS",
            f"USER {_arg_of(session, 'USER', 'bob@b.example')}",
            f"PASS {_arg_of(session, 'PASS', 'bob-pass')}",
            "STAT",
            "LIST",
            "RETR 1",
            "DELE 1",
            "QUIT",
        ]
    tag = events[index].text.split(" ")[0]
    login = next(
        (e.text.split(" ", 2)[2] for e in session if _verb(e.text, "IMAP") == "LOGIN"),
        'bob@b.example "bob-pass"',
    )
    return [
        f"{tag} {cmd}"
        for cmd in (
            "CAPABILITY",
            "STARTTLS",
            f"LOGIN {login}",
            "SELECT INBOX",
            "FETCH 1 (FLAGS)",
            "STORE 1 +FLAGS (\\Seen)",
            "EXPUNGE",
            "LOGOUT",
        )
    ]


# -- answering ---------------------------------------------------------------------------


def read_guess(choice: str | None, typed: str | None, offered: list[str]) -> tuple[str, bool]:
    """The learner's line from the form: a typed line wins over a picked candidate."""
    text = (typed or "").strip("\r\n")
    if text.strip():
        if "\n" in text or "\r" in text:
            raise BadGuess("one_line")
        if len(text) > MAX_LINE:
            raise BadGuess("too_long")
        return text, True
    if choice and is_digits(choice) and len(choice) < 4 and 1 <= int(choice) <= len(offered):
        return offered[int(choice) - 1], False
    raise BadGuess("empty" if not choice else "choice")


def answer(state: PredictState, events: Sequence[Event], line: str, typed: bool) -> Turn:
    point = state.point
    assert point is not None
    turn = Turn(point, line, typed, ask(events, point, line), line == events[point].text)
    state.turns.append(turn)
    return turn

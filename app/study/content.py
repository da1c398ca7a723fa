"""Study content as data: port cards, use cases, exam topics and the question bank (ja + en)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from app.langs import LANGS

CONTENT = Path(__file__).resolve().parent.parent / "content"
QUIZ_DIR = CONTENT / "quiz"
QUESTION_DIR = CONTENT / "questions"
LETTERS = ("ア", "イ", "ウ", "エ")
LEVELS = ("FE", "SG", "AP")
ROLES = ("relay", "submit", "download", "sync")  # what a mail port is for
TLS_MODES = ("starttls", "implicit")


class ContentError(ValueError):
    """A content file that does not say what the study pages need."""


@dataclass(frozen=True)
class Link:
    """A scenario and the event that shows the point: the `occurrence`-th event with `key`.

    Step numbers shift whenever a scenario gains a line, so a link names the event and the
    flow page finds its step in the recording it actually shows (app/web/pages.py).
    """

    scenario: str
    key: str
    occurrence: int = 1

    @property
    def href(self) -> str:
        query = urlencode({"event": self.key, "occurrence": self.occurrence})
        return f"/flow/{self.scenario}?{query}"


@dataclass(frozen=True)
class PortCard:
    port: int
    service: str
    label: dict[str, str]
    names: tuple[str, ...]
    implicit_tls: bool
    role: str  # one of ROLES
    explain: dict[str, str]
    mnemonic: dict[str, str]
    link: Link

    @property
    def id(self) -> str:
        return str(self.port)

    @property
    def tls(self) -> str:
        return "implicit" if self.implicit_tls else "starttls"


@dataclass(frozen=True)
class Distractor:
    port: int
    service: str
    label: dict[str, str]


@dataclass(frozen=True)
class UseCase:
    """A situation; the answer is `port`. `role` and `tls` say what the situation asks for,
    so every card that fits it is known to be right and is never offered as a distractor."""

    id: str
    port: int
    text: dict[str, str]
    role: str
    tls: str | None  # None: the situation does not say how TLS starts

    def fits(self, card: PortCard) -> bool:
        return card.role == self.role and (self.tls is None or card.tls == self.tls)


@dataclass(frozen=True)
class Topic:
    id: str
    name: dict[str, str]


@dataclass(frozen=True)
class Question:
    id: str
    level: str
    topics: tuple[str, ...]
    answer: int  # index into choices, 0 = ア
    stem: dict[str, str]
    choices: dict[str, tuple[str, ...]]
    explanations: dict[str, tuple[str, ...]]
    link: Link | None  # None: no scenario shows this theme (law, office practice)

    def to_json(self, with_answers: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "level": self.level,
            "topics": list(self.topics),
            "ja": {"stem": self.stem["ja"], "choices": list(self.choices["ja"])},
            "en": {"stem": self.stem["en"], "choices": list(self.choices["en"])},
            "link": self.link.href if self.link else None,
        }
        if with_answers:
            data["answer"] = LETTERS[self.answer]
            for lang in LANGS:
                data[lang]["explanations"] = list(self.explanations[lang])
        return data


@dataclass(frozen=True)
class Content:
    cards: dict[str, PortCard]
    distractors: tuple[Distractor, ...]
    usecases: tuple[UseCase, ...]
    topics: dict[str, Topic]
    questions: dict[str, Question]

    def card_by_port(self, port: int) -> PortCard | None:
        return self.cards.get(str(port))

    def right_ports(self, usecase: UseCase) -> set[int]:
        """Every port that answers the use case (its key and any other that fits it)."""
        return {c.port for c in self.cards.values() if usecase.fits(c)}

    def questions_in(self, topic: str) -> list[Question]:
        return [q for q in self.questions.values() if topic in q.topics]


def _bi(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or any(not str(raw.get(lang, "")).strip() for lang in LANGS):
        raise ContentError(f"{where}: needs both ja and en text")
    return {lang: str(raw[lang]).strip() for lang in LANGS}


LINK_FIELDS = {"scenario", "key", "occurrence"}


def _link(raw: Any, where: str) -> Link:
    if not isinstance(raw, dict) or not raw.get("scenario") or not raw.get("key"):
        raise ContentError(f"{where}: link needs scenario and key (and optionally occurrence)")
    extra = set(raw) - LINK_FIELDS
    if extra:
        # e.g. an old `step = N`: steps shift when a scenario changes, events do not.
        raise ContentError(f"{where}: link has unknown fields {sorted(extra)}")
    occurrence = raw.get("occurrence", 1)
    if not isinstance(occurrence, int) or isinstance(occurrence, bool) or occurrence < 1:
        raise ContentError(f"{where}: link occurrence must be a whole number ≥ 1")
    return Link(str(raw["scenario"]), str(raw["key"]), occurrence)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ContentError(f"{where}: must be one of {allowed}, not {value!r}")
    return str(value)


def _usecase(raw: dict[str, Any]) -> UseCase:
    where = f"use case {raw.get('id')}"
    needs = raw.get("needs")
    if not isinstance(needs, dict):
        raise ContentError(f"{where}: needs = {{ role = ..., tls = ... }} says what it asks for")
    tls = needs.get("tls")
    return UseCase(
        id=str(raw["id"]),
        port=int(raw["port"]),
        text=_bi(raw, where),
        role=_choice(needs.get("role"), ROLES, f"{where} role"),
        tls=None if tls is None else _choice(tls, TLS_MODES, f"{where} tls"),
    )


def _question(raw: dict[str, Any], where: str, topic_ids: set[str]) -> Question:
    qid = str(raw.get("id", ""))
    where = f"{where} {qid or '?'}"
    if not qid:
        raise ContentError(f"{where}: no id")
    level = raw.get("level")
    if level not in LEVELS:
        raise ContentError(f"{where}: level must be one of {LEVELS}")
    topics = tuple(raw.get("topics", ()))
    if not topics or any(t not in topic_ids for t in topics):
        raise ContentError(f"{where}: unknown or missing topics {topics}")
    answer = raw.get("answer")
    if answer not in LETTERS:
        raise ContentError(f"{where}: answer must be one of ア イ ウ エ")
    stem, choices, explanations = {}, {}, {}
    for lang in LANGS:
        part = raw.get(lang)
        if not isinstance(part, dict):
            raise ContentError(f"{where}: no [{lang}] part")
        stem[lang] = str(part.get("stem", "")).strip()
        choices[lang] = tuple(str(c).strip() for c in part.get("choices", ()))
        explanations[lang] = tuple(str(e).strip() for e in part.get("why", ()))
        if not stem[lang]:
            raise ContentError(f"{where}: empty {lang} stem")
        if len(choices[lang]) != 4 or not all(choices[lang]):
            raise ContentError(f"{where}: {lang} needs four choices")
        if len(explanations[lang]) != 4 or not all(explanations[lang]):
            raise ContentError(f"{where}: {lang} needs an explanation for every choice")
    return Question(
        id=qid,
        level=level,
        topics=topics,
        answer=LETTERS.index(answer),
        stem=stem,
        choices=choices,
        explanations=explanations,
        link=_link(raw["link"], where) if "link" in raw else None,
    )


def load_content(quiz_dir: Path = QUIZ_DIR, question_dir: Path = QUESTION_DIR) -> Content:
    topics_raw = tomllib.loads((quiz_dir / "topics.toml").read_text("utf-8"))["topics"]
    topics = {t["id"]: Topic(t["id"], _bi(t, f"topic {t['id']}")) for t in topics_raw}

    ports = tomllib.loads((quiz_dir / "ports.toml").read_text("utf-8"))
    cards: dict[str, PortCard] = {}
    for raw in ports["cards"]:
        where = f"port card {raw.get('port')}"
        card = PortCard(
            port=int(raw["port"]),
            service=str(raw["service"]),
            label=_bi(raw.get("label"), where),
            names=tuple(raw.get("names", ())),
            implicit_tls=bool(raw.get("implicit_tls", False)),
            role=_choice(raw.get("role"), ROLES, f"{where} role"),
            explain=_bi(raw.get("explain"), where),
            mnemonic=_bi(raw.get("mnemonic"), where),
            link=_link(raw.get("link"), where),
        )
        cards[card.id] = card
    distractors = tuple(
        Distractor(int(d["port"]), str(d["service"]), _bi(d.get("label"), f"port {d['port']}"))
        for d in ports.get("distractors", ())
    )
    usecases = tuple(_usecase(u) for u in ports.get("usecases", ()))
    for u in usecases:
        card = cards.get(str(u.port))
        if card is None:
            raise ContentError(f"use case {u.id}: port {u.port} has no card")
        if not u.fits(card):
            raise ContentError(f"use case {u.id}: port {u.port} does not fit its own needs")

    questions: dict[str, Question] = {}
    for path in sorted(question_dir.glob("*.toml")):
        for raw in tomllib.loads(path.read_text("utf-8")).get("questions", ()):
            q = _question(raw, path.name, set(topics))
            if q.id in questions:
                raise ContentError(f"{path.name}: duplicate question id {q.id}")
            questions[q.id] = q
    return Content(cards, distractors, usecases, topics, questions)


@cache
def content() -> Content:
    return load_content()

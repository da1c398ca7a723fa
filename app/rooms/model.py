"""A room's state, kept as one small JSON value on the bus (answers and students apart).

Only the teacher changes this value (step, lock, polls); students' joins and answers go
to hashes of their own, so hundreds of answers never contend for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

PollKind = Literal["predict", "exam"]


@dataclass
class Poll:
    id: int
    kind: PollKind
    step: int  # the teacher's step when it was opened
    choices: dict[str, list[str]]  # per language (predict: the same protocol lines)
    right: list[bool]  # per choice: the real server accepts it / the bank's answer
    point: int | None = None  # predict: index of the recorded client line asked about
    replies: list[str] = field(default_factory=list)  # predict: what the server answers each
    qid: str | None = None  # exam: the question's id in the bank
    revealed: bool = False

    def label(self, lang: str, i: int) -> str:
        return self.choices.get(lang, self.choices["ja"])[i]


@dataclass
class RoomMeta:
    code: str
    slug: str
    lang: str  # the language the recording was made in
    teacher: str  # sha256 of the teacher's token; the token itself stays in their cookie
    total: int
    created: float
    step: int = 0
    locked: bool = False
    ended: bool = False
    poll: int | None = None  # the poll on screen
    polls: list[Poll] = field(default_factory=list)

    def current(self) -> Poll | None:
        return self.find(self.poll) if self.poll is not None else None

    def find(self, poll_id: int) -> Poll | None:
        for poll in self.polls:
            if poll.id == poll_id:
                return poll
        return None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RoomMeta:
        data: dict[str, Any] = json.loads(raw)
        data["polls"] = [Poll(**p) for p in data.get("polls", [])]
        return cls(**data)

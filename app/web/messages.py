"""The messages the flow websocket accepts, validated before anything acts on them.

See docs/protocol.md for both directions. Anything that does not parse as one of
these gets an `error` message back; the connection and the session stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_MESSAGE_BYTES = 4096


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Msg):
    type: Literal["hello"]
    slug: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")
    session: str | None = Field(default=None, max_length=64)
    step: int = Field(default=0, ge=0, le=100_000)
    lang: Literal["ja", "en"] = "ja"


class Next(_Msg):
    type: Literal["next"]


class Back(_Msg):
    type: Literal["back"]


class Play(_Msg):
    type: Literal["play"]


class Pause(_Msg):
    type: Literal["pause"]


class Restart(_Msg):
    type: Literal["restart"]


class Reset(_Msg):
    type: Literal["reset"]


class Goto(_Msg):
    type: Literal["goto"]
    step: int = Field(ge=0, le=100_000)


class Speed(_Msg):
    type: Literal["speed"]
    value: float = Field(ge=0.25, le=8.0)


ClientMessage = Annotated[
    Hello | Next | Back | Play | Pause | Restart | Reset | Goto | Speed,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class BadMessage(ValueError):
    pass


def parse(raw: str | bytes) -> ClientMessage:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message too large (over {MAX_MESSAGE_BYTES} bytes)")
    try:
        return _adapter.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        raise BadMessage(f"{where}: {first.get('msg', 'invalid')}") from None


# -- coalescing position changes ---------------------------------------------
@dataclass(frozen=True, slots=True)
class Move:
    """Position changes merged into one: position -> clamp(position + delta, lo, hi).

    With `total` lines, next is clamp(x + 1, 0, total), back clamp(x - 1, 0, total)
    and goto s the constant clamp(s, 0, total). A sequence of such functions is again
    one of them, so a burst of position messages becomes one exact move: a learner
    holding the arrow key ends on the step the keys say, for one render.
    `first` is the message while only one was merged (it keeps its own reply).
    """

    delta: int
    lo: int
    hi: int
    count: int = 1
    first: Next | Back | Goto | Restart | None = None

    @classmethod
    def of(cls, msg: Next | Back | Goto | Restart, total: int) -> Move:
        if isinstance(msg, Next | Back):
            return cls(1 if isinstance(msg, Next) else -1, 0, total, first=msg)
        step = min(msg.step if isinstance(msg, Goto) else 0, total)
        return cls(0, step, step, first=msg)

    def then(self, later: Move) -> Move:
        """This move followed by `later`, as one move."""
        d = later.delta

        def clamp(x: int) -> int:
            return min(max(x, later.lo), later.hi)

        return Move(
            self.delta + d, clamp(self.lo + d), clamp(self.hi + d), self.count + later.count
        )

    def apply(self, position: int) -> int:
        return min(max(position + self.delta, self.lo), self.hi)

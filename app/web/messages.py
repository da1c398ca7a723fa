"""The messages the flow websocket accepts, validated before anything acts on them.

See docs/protocol.md for both directions. Anything that does not parse as one of
these gets an `error` message back; the connection and the session stay as they were.
"""

from __future__ import annotations

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

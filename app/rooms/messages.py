"""Messages the room websocket accepts (docs/protocol.md, "Classroom rooms")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.web.messages import MAX_MESSAGE_BYTES, BadMessage


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Msg):
    type: Literal["hello"]
    code: str = Field(pattern=r"^[A-Z2-9]{6}$")
    role: Literal["teacher", "student"]
    lang: Literal["ja", "en"] = "ja"


class Next(_Msg):
    type: Literal["next"]


class Back(_Msg):
    type: Literal["back"]


class Goto(_Msg):
    type: Literal["goto"]
    step: int = Field(ge=0, le=100_000)


class Lock(_Msg):
    type: Literal["lock"]
    on: bool


class End(_Msg):
    type: Literal["end"]


class OpenPoll(_Msg):
    type: Literal["poll"]
    kind: Literal["predict", "exam"]
    question: str | None = Field(default=None, max_length=60)


class Reveal(_Msg):
    type: Literal["reveal"]


class Unpoll(_Msg):
    type: Literal["unpoll"]


class AnswerMsg(_Msg):
    type: Literal["answer"]
    poll: int = Field(ge=1, le=100_000)
    choice: int = Field(ge=0, le=20)


RoomMessage = Annotated[
    Hello | Next | Back | Goto | Lock | End | OpenPoll | Reveal | Unpoll | AnswerMsg,
    Field(discriminator="type"),
]
TEACHER_ONLY = (Next, Back, Goto, Lock, End, OpenPoll, Reveal, Unpoll)
_adapter: TypeAdapter[RoomMessage] = TypeAdapter(RoomMessage)


def parse(raw: str | bytes) -> RoomMessage:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message too large (over {MAX_MESSAGE_BYTES} bytes)")
    try:
        return _adapter.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        raise BadMessage(f"{where}: {first.get('msg', 'invalid')}") from None

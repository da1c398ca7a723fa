"""The raw way out for room messages: one frame built per message, written as is to
every socket's transport.

Why: a step goes to every phone of the class at once. Through Starlette and uvicorn,
each socket pays for its own framing, UTF-8 encoding and a chain of awaits, and with
permessage-deflate its own compression (docs/benchmarks.md, "Classroom rooms"). A
server→client frame is not masked (RFC 6455 §5.1), so without compression the bytes of
a message are the same for every socket: build them once, write them N times.

This reaches into uvicorn's sans-I/O websocket protocol (the server's `ws=`, see
app/__main__.py), found through the ASGI `receive` it hands the app: its transport, and
its websockets `ServerProtocol` for the connection's state and extensions. It is used
only when all of that is there, the connection is open and negotiated no extension;
otherwise `raw_transport` says None and the room sends through Starlette as before.
tests/test_rooms_wire.py checks the raw way is the one taken on the product's server
setup, so an upgrade that moves these parts shows there, not as a slow class.
"""

from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode
from websockets.protocol import State

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol,
    )
except ImportError:  # another uvicorn: every socket takes the framed way
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

MAX_BACKLOG = 1 << 20  # bytes unsent to one phone before it is cut off (it can resync)


class Outgoing:
    """A room message: its text, and its frame once a raw socket needs it."""

    __slots__ = ("_frame", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = Frame(Opcode.TEXT, self.text.encode()).serialize(mask=False)
        return self._frame


class RawTransport:
    """One socket's raw way out. Writes never wait: a phone that stops reading grows
    its buffer (asyncio's, beyond the kernel's) until `max_backlog`, then it is cut
    off instead of holding up the class or the server's memory."""

    __slots__ = ("proto",)
    max_backlog = MAX_BACKLOG

    def __init__(self, proto: Any) -> None:
        self.proto = proto

    def write(self, frame: bytes) -> bool:
        proto = self.proto
        if proto.close_sent or proto.disconnected or proto.conn.state is not State.OPEN:
            return False
        transport = proto.transport
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.max_backlog:
            transport.abort()  # uvicorn then tells the socket's loop it disconnected
            return False
        transport.write(frame)
        return True


def raw_transport(ws: WebSocket) -> RawTransport | None:
    """The raw way for an accepted socket, or None when it must be sent to framed."""
    proto = getattr(getattr(ws, "_receive", None), "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(proto, WebSocketsSansIOProtocol):
        return None
    if not proto.handshake_complete or proto.conn.extensions:
        return None  # compression (or any extension) frames each socket differently
    return RawTransport(proto)

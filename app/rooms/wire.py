"""The raw way out for room messages: straight to each socket's transport, never
waiting; without compression, one frame built per message and written as is to all.

Why: a step goes to every phone of the class at once. Through Starlette and uvicorn,
each socket pays for its own framing, UTF-8 encoding and a chain of awaits, and with
permessage-deflate its own compression (docs/benchmarks.md, "Classroom rooms"). A
server→client frame is not masked (RFC 6455 §5.1), so without compression the bytes of
a message are the same for every socket: build them once, write them N times.

A socket that negotiated permessage-deflate gets its own compressed frame from its
websockets `ServerProtocol`, written the same way (what uvicorn's send does, minus the
wait for a paused transport).

This reaches into uvicorn's sans-I/O websocket protocol (the server's `ws=`, see
app/__main__.py), found through the ASGI `receive` it hands the app: its transport, and
its websockets `ServerProtocol` for the connection's state and extensions. It is used
only when that is what the server runs and the handshake is done; otherwise
`raw_transport` says None and the room sends through Starlette's `send_text`.
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
    """A room message: its text, its UTF-8 bytes and its uncompressed frame, each made
    once, when the first socket needs it."""

    __slots__ = ("_data", "_frame", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: bytes | None = None
        self._frame: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.text.encode()
        return self._data

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = Frame(Opcode.TEXT, self.data).serialize(mask=False)
        return self._frame


class RawTransport:
    """One socket's raw way out. Writes never wait: a phone that stops reading grows
    its buffer (asyncio's, beyond the kernel's) until `max_backlog`, then it is cut
    off instead of holding up the class or the server's memory."""

    __slots__ = ("compressed", "proto")
    max_backlog = MAX_BACKLOG

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.compressed = bool(proto.conn.extensions)  # fixed by the handshake

    def write(self, out: Outgoing) -> bool:
        proto = self.proto
        if proto.close_sent or proto.disconnected or proto.conn.state is not State.OPEN:
            return False
        transport = proto.transport
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.max_backlog:
            transport.abort()  # uvicorn then tells the socket's loop it disconnected
            return False
        if not self.compressed:
            transport.write(out.frame)
            return True
        try:
            proto.conn.send_text(out.data)  # this socket's own compressed frame
        except Exception:  # the protocol saw the connection end
            return False
        transport.write(b"".join(proto.conn.data_to_send()))
        return True


def raw_transport(ws: WebSocket) -> RawTransport | None:
    """The raw way for an accepted socket, or None when it must be sent to framed."""
    proto = getattr(getattr(ws, "_receive", None), "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(proto, WebSocketsSansIOProtocol):
        return None
    if not proto.handshake_complete:
        return None
    return RawTransport(proto)

"""Lean websocket clients for the load generators (RFC 6455), so that the 2 shared CPUs go
to the server being measured.

The `websockets` client costs about as much CPU per connection and per received frame as
the server's own work (a task per socket, frame objects, a queue, UTF-8 decoding), so with
it the benches partly measured the client. These do only what the benches need, and nothing
that would make the server's work smaller: a full HTTP/1.1 upgrade with a random key, the
permessage-deflate offer a browser makes (RFC 7692; `permessage-deflate;
client_max_window_bits`, as Chrome, Firefox and Safari send; frames the server compresses
are inflated here), masked client frames with a random mask (§5.3).

- `LeanSocket` (asyncio streams): a learner who sends and awaits replies (flow benches);
  checks Sec-WebSocket-Accept, answers pings, closes with a handshake.
- `LeanClient` (an asyncio.Protocol per socket): a student who only listens (room fan-out);
  server→client frames are unmasked, so reading one is a header parse and a slice, and a
  frame is only searched for marker bytes, never decoded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time
import zlib
from urllib.parse import urlsplit

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2: appended before inflating a message


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client→server frame (RFC 6455 §5.3: clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class Closed(Exception):
    """The server closed the connection (a close frame or EOF)."""


class LeanSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deflate: bool):
        self.reader, self.writer = reader, writer
        self._inflate = zlib.decompressobj(-15) if deflate else None
        self.deflate = deflate  # the server accepted permessage-deflate

    @classmethod
    async def connect(cls, host: str, port: int, path: str, *, offer_deflate: bool = True):
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            f"Origin: http://{host}:{port}",
        ]
        if offer_deflate:
            lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status, *fields = head.decode("latin-1").split("\r\n")
        if not status.startswith("HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(f"no upgrade: {status}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            writer.close()
            raise ConnectionError("bad Sec-WebSocket-Accept")
        deflate = "permessage-deflate" in headers.get("sec-websocket-extensions", "")
        return cls(reader, writer, deflate)

    async def send(self, text: str) -> None:
        self.writer.write(client_frame(0x1, text.encode()))

    async def recv(self) -> str:
        """The next text message (fragments joined; pings answered)."""
        parts: list[bytes] = []
        compressed = False
        while True:
            try:
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise Closed("connection lost") from exc
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise Closed(payload[2:].decode(errors="replace"))
            if opcode == 0x9:  # ping: answer at once
                self.writer.write(client_frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                compressed = bool(b0 & 0x40)
            parts.append(payload)
            if b0 & 0x80:  # FIN
                break
        data = b"".join(parts)
        if compressed:
            assert self._inflate is not None
            data = self._inflate.decompress(data + b"\x00\x00\xff\xff")
        return data.decode()

    async def close(self) -> None:
        try:
            self.writer.write(client_frame(0x8, struct.pack("!H", 1000)))
            while True:
                await self.recv()  # until the server's close frame
        except Closed:
            pass
        finally:
            self.writer.close()


class LeanClient(asyncio.Protocol):
    """One student: counts the frames holding `marker` and when each arrived."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.times: list[float] = []
        self.frames: list[str] = []  # kept only when keep is set
        self.keep = False
        self.want = 0
        self.got = asyncio.Event()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.seen: asyncio.Event = asyncio.Event()  # a frame holding `waiting_for` came
        self.waiting_for = b""
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshake = True
        self.inflate: zlib._Decompress | None = None  # type: ignore[name-defined]
        self.fragments: list[bytes] = []
        self.fragment_rsv1 = False
        self.closed = False

    # -- opening ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def _handshake(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        self.handshake = False
        status, *lines = head.split("\r\n")
        if " 101 " not in status + " ":
            self.opened.set_exception(ConnectionError(status))
            return
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
                self.inflate = zlib.decompressobj(-15)  # any window the server chose (≤ 15)
        self.opened.set_result(None)

    # -- frames -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.handshake:
            self._handshake()
            if self.handshake:
                return
        buf = self.buf
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if size - start < n:
                break
            self._frame(b0, bytes(buf[start : start + n]))
            pos = start + n
        if pos:
            del buf[:pos]

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode >= 8:  # control frames are never fragmented nor compressed
            if opcode == 9:  # ping → pong (uvicorn's keepalive)
                self._write(client_frame(0xA, payload))
            elif opcode == 8:
                if not self.closed:
                    self._write(client_frame(0x8, payload[:2]))
                self.closed = True
            return
        if opcode != 0:  # the first frame of a message
            self.fragment_rsv1 = bool(b0 & 0x40)
        if not b0 & 0x80:
            self.fragments.append(payload)
            return
        if self.fragments:
            self.fragments.append(payload)
            payload = b"".join(self.fragments)
            self.fragments = []
        if self.fragment_rsv1:
            assert self.inflate is not None, "a compressed frame without the extension"
            payload = self.inflate.decompress(payload + TAIL)
        self._message(payload)

    def _message(self, payload: bytes) -> None:
        if self.waiting_for and self.waiting_for in payload:
            self.seen.set()
        if self.marker in payload:
            self.times.append(time.perf_counter())
            if self.keep:
                self.frames.append(payload.decode())
            if len(self.times) >= self.want:
                self.got.set()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- the benchmark's side ---------------------------------------------------------
    async def send_text(self, text: str) -> None:
        self._write(client_frame(0x1, text.encode()))

    async def close(self) -> None:
        if not self.closed:
            self._write(client_frame(0x8, struct.pack("!H", 1000)))
            self.closed = True
        if self.transport is not None:
            self.transport.close()


async def open_lean(
    url: str,
    headers: dict[str, str],
    marker: bytes,
    *,
    offer_deflate: bool = True,
    hello: str | None = None,
    until: bytes = b"",
) -> LeanClient:
    """Opens one socket; with `hello`, sends it and waits for a frame holding `until`."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: LeanClient(marker), parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if offer_deflate:
        lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    assert client.transport is not None
    client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await asyncio.wait_for(client.opened, 120)
    if hello is not None:
        client.waiting_for = until
        await client.send_text(hello)
        await asyncio.wait_for(client.seen.wait(), 120)
        client.waiting_for = b""
    return client

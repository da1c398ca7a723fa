"""A lean websocket client for the load generators (RFC 6455 over asyncio streams).

The load generator shares the two CPUs with the server it measures; the `websockets`
client costs about as much CPU per connection as the server's own work (handshake,
frame objects, a task per connection), so with it the benches partly measured the
client. This one does only what the benches need, and nothing that would make the
server's work smaller: a full HTTP/1.1 upgrade with a random key (checked against
Sec-WebSocket-Accept), the permessage-deflate offer a browser makes (RFC 7692; frames
the server compresses are inflated here), masked text frames with a random mask (§5.3),
answers to pings, and a close handshake.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
OFFER = "permessage-deflate; client_max_window_bits"  # what Chromium sends


class Closed(Exception):
    """The server closed the connection (a close frame or EOF)."""


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


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
            lines.append(f"Sec-WebSocket-Extensions: {OFFER}")
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

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        key = os.urandom(4)
        return head + key + _mask(payload, key)

    async def send(self, text: str) -> None:
        self.writer.write(self._frame(0x1, text.encode()))

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
                self.writer.write(self._frame(0xA, payload))
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
            self.writer.write(self._frame(0x8, struct.pack("!H", 1000)))
            while True:
                await self.recv()  # until the server's close frame
        except Closed:
            pass
        finally:
            self.writer.close()

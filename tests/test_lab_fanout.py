"""The live view's fan-out: each lab event rendered once for all viewers, slow ones dropped.

Real viewers (websocket clients on /ws/lab) watch real SMTP sessions on the lab's port 25.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import struct
from collections.abc import Iterator

import pytest
from lab_server import LabServer
from websockets.sync.client import ClientConnection, connect

from app.lab import live

VIEWERS = 20


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    server = LabServer(tmp_path_factory.mktemp("fanout")).start()
    yield server
    server.stop()


def client_frame(payload: bytes) -> bytes:
    """A masked text frame, as RFC 6455 §5.3 requires from a client."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def read_frames(sock: socket.socket) -> tuple[list[bytes], int]:
    """Read unmasked server frames until the close frame; (text payloads, close code)."""
    sock.settimeout(10)
    data, texts = b"", []
    while True:
        while True:
            if len(data) >= 2:
                size, start = data[1] & 0x7F, 2
                if size == 126 and len(data) >= 4:
                    size, start = struct.unpack("!H", data[2:4])[0], 4
                elif size == 127 and len(data) >= 10:
                    size, start = struct.unpack("!Q", data[2:10])[0], 10
                if (size < 126 or start > 2) and len(data) >= start + size:
                    break
            chunk = sock.recv(65536)
            assert chunk, "closed without a close frame"
            data += chunk
        opcode, payload, data = data[0] & 0x0F, data[start : start + size], data[start + size :]
        if opcode == 0x8:
            return texts, struct.unpack("!H", payload[:2])[0]
        texts.append(payload)


def session(lab: LabServer, name: str) -> None:
    with smtplib.SMTP("127.0.0.1", lab.port("smtp")) as c:
        c.ehlo(name)
        c.noop()


def viewer(lab: LabServer, lang: str = "en", **kwargs: object) -> ClientConnection:
    ws = connect(lab.ws, **kwargs).__enter__()
    ws.send(json.dumps({"type": "hello", "lang": lang}))
    assert json.loads(ws.recv(timeout=10))["type"] == "recent"
    return ws


def until(ws: ClientConnection, marker: str) -> list[str]:
    frames = [ws.recv(timeout=10)]
    while marker not in frames[-1]:
        frames.append(ws.recv(timeout=10))
    return frames


def test_each_event_is_rendered_once_and_everyone_gets_the_same_bytes(lab: LabServer) -> None:
    hub = lab.app.state.hub
    viewers = [viewer(lab) for _ in range(VIEWERS)] + [viewer(lab, "ja")]
    before, first_seq = live.renders, hub.recent[-1].seq if hub.recent else 0
    session(lab, "first.example")
    session(lab, "last.example")
    seen = [until(ws, "last.example") for ws in viewers]
    for ws in viewers:
        ws.close()
    events = [json.loads(f)["event"] for f in seen[0]]
    assert len(events) >= 8 and [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(frames == seen[0] for frames in seen[1:VIEWERS])  # byte for byte
    assert seen[-1] != seen[0] and len(seen[-1]) == len(seen[0])  # the ja view
    # Once per language, not once per viewer (old code: 21 renders per event). Events
    # after the marker may have been rendered already, or not yet.
    published = hub.recent[-1].seq - first_seq
    assert 2 * len(events) <= live.renders - before <= 2 * published


def test_a_viewer_that_falls_behind_is_told_and_closed_and_the_others_get_everything(
    lab: LabServer,
) -> None:
    hub = lab.app.state.hub
    # The lab process sends its events in frames of up to 5 ms (app/lab/channel.py), and
    # this process (test and server share it) may read a few at once: a viewer that
    # reads at once still gets several sessions' events in one go. The limit must be
    # well above that, and is still reached by one that never reads.
    hub.queue_size = 300
    fast = viewer(lab, max_queue=None)  # buffers all it is sent while the test is busy
    # A viewer that says hello and then reads nothing, with a tiny receive window.
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    raw.connect(("127.0.0.1", int(lab.url.rsplit(":", 1)[1])))
    raw.sendall(
        b"GET /ws/lab HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" + client_frame(b'{"type":"hello","lang":"en"}')
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)  # only the handshake's answer, byte by byte
    assert head.startswith(b"HTTP/1.1 101")
    sessions = 0
    while hub.dropped == 0 and sessions < 500:
        session(lab, f"s{sessions}.example")
        sessions += 1
    session(lab, "last.example")
    got = [json.loads(f) for f in until(fast, "last.example")]
    seqs = [m["event"]["seq"] for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the fast one missed nothing
    fast.close()
    assert hub.dropped == 1
    # Now it reads: what was in flight, then the notice, then the close (1013).
    texts, code = read_frames(raw)
    raw.close()
    assert json.loads(texts[-1])["code"] == "fell_behind" and code == 1013
    assert all(b"last.example" not in t for t in texts)

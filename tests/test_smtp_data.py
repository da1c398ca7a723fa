"""DATA read in blocks (app/engines/smtp_data.py) answers exactly as aiosmtpd's own
line-by-line smtp_DATA: the same bytes sent over loopback TCP to our tapped server and
to a plain aiosmtpd server with the same limits give the same reply codes and the same
stored message, whether the bytes come in one write or one octet at a time."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from app.engines.base import Endpoint
from app.engines.smtp_tap import DATA_SHOWN_LIMIT, MAX_SHOWN_LINE, TappedSMTP, WireTap
from app.events import Recorder, wire_text

SIZE_LIMIT = 4000  # small, so 552 is reached with a few KB
HEAD = b"EHLO c.example\r\nMAIL FROM:<a@a.example>\r\nRCPT TO:<b@b.example>\r\nDATA\r\n"

CASES: dict[str, bytes] = {
    "plain": b"Subject: x\r\n\r\nhello\r\n.\r\n",
    "empty message": b".\r\n",
    "empty lines": b"\r\n\r\n.\r\n",
    "dot-stuffed": b"..leading\r\n..\r\nmid.dle\r\n...\r\n.x\r\n.\r\n",
    "bare LF dot ends nothing": b"hi\n.\nRSET\nbye\r\n.\r\n",
    "bare CR dot ends nothing": b"hi\r.\rx\r\n.\r\n",
    "line of 999 + CRLF": b"a" * 999 + b"\r\n.\r\n",
    "line of 1000 + CRLF": b"b" * 1000 + b"\r\n.\r\n",
    "line of 1001 + CRLF": b"c" * 1001 + b"\r\n.\r\n",
    "line of 3000 + CRLF": b"d" * 3000 + b"\r\nok\r\n.\r\n",
    "line of 1001 ending in CR": b"e" * 1000 + b"\r" + b"\r\n.\r\n",
    "too much": b"f" * 70 + b"\r\n" + (b"g" * 98 + b"\r\n") * 50 + b".\r\n",
    "exactly the limit": (b"h" * 98 + b"\r\n") * 40 + b".\r\n",
    "too long then too much": b"i" * 1500 + b"\r\n" + (b"j" * 98 + b"\r\n") * 50 + b".\r\n",
    "too much then too long": (b"k" * 98 + b"\r\n") * 45 + b"l" * 1500 + b"\r\n.\r\n",
    "crosses the limit on a long line": (b"m" * 98 + b"\r\n") * 39 + b"n" * 1000 + b"\r\n.\r\n",
}


class Keep:
    """A handler that keeps each message it accepts."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 OK"


async def _serve(factory: Any) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _talk(port: int, body: bytes, one_octet_at_a_time: bool) -> list[str]:
    """The transaction up to DATA's 354, then the body and RSET, NOOP, QUIT; the code
    of every reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")

        def replies(count: int) -> list[str]:
            codes = []
            while len(codes) < count and (line := reader.readline()):
                if line[3:4] != b"-":
                    codes.append(line[:3].decode())
            return codes

        codes = replies(1)
        sock.sendall(HEAD)  # EHLO, MAIL, RCPT, DATA pipelined (RFC 2920: DATA last)
        codes += replies(4)
        raw = body + b"RSET\r\nNOOP\r\nQUIT\r\n"
        if one_octet_at_a_time:
            for i in range(len(raw)):
                sock.sendall(raw[i : i + 1])
        else:
            sock.sendall(raw)
        return codes + replies(10**6)


@pytest.mark.parametrize("chunked", [False, True], ids=["one write", "octet by octet"])
async def test_data_in_blocks_answers_as_aiosmtpd_does(chunked: bool) -> None:
    ours, theirs = Keep(), Keep()
    recorder = Recorder()
    endpoint = Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example")
    limits = dict(data_size_limit=SIZE_LIMIT, decode_data=False, hostname="mx.b.example")
    tapped, tapped_port = await _serve(
        lambda: TappedSMTP(ours, endpoint=endpoint, sink=recorder.emit, **limits)
    )
    plain, plain_port = await _serve(lambda: SMTP(theirs, **limits))
    try:
        for name, body in CASES.items():
            if chunked and len(body) > 1200 and name != "line of 1001 ending in CR":
                continue  # octet by octet is slow; the short cases cover the splits
            got = await asyncio.to_thread(_talk, tapped_port, body, chunked)
            want = await asyncio.to_thread(_talk, plain_port, body, chunked)
            assert got == want, name
            assert ours.messages == theirs.messages, name
    finally:
        for server in (tapped, plain):
            server.close()
            await server.wait_closed()
    # The cases that are refused store nothing; the others are all kept.
    assert 0 < len(ours.messages) < len(CASES)
    assert b".leading\r\n.\r\nmid.dle\r\n..\r\nx\r\n" in ours.messages


async def test_the_view_shows_each_message_and_its_end_once() -> None:
    """The tap takes the message in blocks too: one content event and one "." per mail,
    the content exactly what was sent (dot-stuffing shown as sent), the RSET after it
    a command of its own."""
    recorder = Recorder()
    endpoint = Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example")
    server, port = await _serve(
        lambda: TappedSMTP(Keep(), endpoint=endpoint, sink=recorder.emit, decode_data=False)
    )
    body = CASES["dot-stuffed"]
    try:
        for chunked in (False, True):
            assert await asyncio.to_thread(_talk, port, body, chunked) == [
                "220", "250", "250", "250", "354", "250", "250", "250", "221",
            ]  # fmt: skip
    finally:
        server.close()
        await server.wait_closed()
    contents = [e.text for e in recorder.events if e.key == "smtp.data.content"]
    assert contents == [wire_text(body[: -len(b".\r\n")])] * 2
    assert [e.key for e in recorder.events if e.text == "."] == ["smtp.data.end"] * 2
    assert [e.text for e in recorder.events if e.key == "smtp.rset"] == ["RSET", "RSET"]


async def test_a_large_message_is_kept_whole_and_shown_cut_at_the_same_line() -> None:
    # The view shows whole lines up to DATA_SHOWN_LIMIT octets; the mailbox gets it all.
    recorder, keep = Recorder(), Keep()
    endpoint = Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example")
    server, port = await _serve(
        lambda: TappedSMTP(keep, endpoint=endpoint, sink=recorder.emit, decode_data=False)
    )
    lines = [b"%05d " % i + b"y" * 72 + b"\r\n" for i in range(1300)]  # 80 octets each
    try:
        codes = await asyncio.to_thread(_talk, port, b"".join(lines) + b".\r\n", False)
    finally:
        server.close()
        await server.wait_closed()
    assert codes[5] == "250"
    assert keep.messages == [b"".join(lines)]
    [content] = [e for e in recorder.events if e.key == "smtp.data.content"]
    shown = DATA_SHOWN_LIMIT // 80  # whole lines within the limit
    assert content.text == wire_text(b"".join(lines[:shown]))
    assert content.detail["cut"] == f"{1300 * 80} octets; first {DATA_SHOWN_LIMIT} shown"


def test_the_tap_holds_a_line_that_never_ends_in_bounded_memory() -> None:
    # 2 MiB in DATA without a CRLF: aiosmtpd drains it in bounded memory (and answers
    # 500); the tap must not keep it all (nor copy it again for every chunk).
    recorder = Recorder()
    endpoint = Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example")
    wire = WireTap(endpoint.new_tap(recorder.emit), "smtp")
    wire.received(b"DATA\r\n")
    wire.pushed("354 End data with <CR><LF>.<CR><LF>")
    most = 0
    for _ in range(32):
        wire.received(b"z" * 65536)
        most = max(most, len(wire._inbuf))
    wire.received(b"\r\n.\r\nQUIT\r\n")
    assert most <= 65536 + 4 * MAX_SHOWN_LINE
    keys = [e.key for e in recorder.events][-3:]
    assert keys == ["smtp.data.content", "smtp.data.end", "smtp.quit"]
    [content] = [e for e in recorder.events if e.key == "smtp.data.content"]
    assert content.detail["cut"] == f"{32 * 65536 + 2} octets; first {DATA_SHOWN_LIMIT} shown"

"""What the POP3 and IMAP adapters share (app/engines/base.py), over real TCP: plaintext
pipelined after STARTTLS is dropped, a stalled handshake is cut, and an exception in
a session is a logged bug answered with a server error and a close, not a quiet -ERR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.engines import imap_server, pop3_server
from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.protocols.imap import server as imap_core
from app.world.accounts import Accounts
from app.world.mailstore import MailStore

BOB = "bob@b.example"
_TLS: dict[str, LabTLS] = {}


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def until(self, prefix: bytes) -> list[bytes]:
        lines = []
        while True:
            line = await self.line()
            assert line, f"closed before {prefix!r}: {lines}"
            lines.append(line)
            if line.startswith(prefix):
                return lines

    def send(self, data: bytes) -> None:
        self.writer.write(data)


@pytest.fixture
def ctx(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> EngineContext:
    if "tls" not in _TLS:
        _TLS["tls"] = LabTLS.load(tmp_path_factory.mktemp("tls"))
    store = MailStore(tmp_path / "mail")
    store.deliver(BOB, b"From: alice@a.example\r\nSubject: hi\r\n\r\nhello\r\n")
    return EngineContext(store, Accounts(), _TLS["tls"], Recorder().emit)


def endpoint(protocol: str, **extra: object) -> Endpoint:
    port = 143 if protocol == "IMAP" else 110
    return Endpoint(4, protocol, port, "server", "mua", hostname="mx.b.example", **extra)  # type: ignore[arg-type]


@pytest.fixture
async def imap_port(ctx: EngineContext) -> AsyncIterator[int]:
    server = await imap_server.start_imap_server(ctx, endpoint("IMAP"), cleartext_login=True)
    yield server.sockets[0].getsockname()[1]
    await close_server(server)


@pytest.fixture
async def pop3_port(ctx: EngineContext) -> AsyncIterator[int]:
    server = await pop3_server.start_pop3_server(ctx, endpoint("POP3"), cleartext_login=True)
    yield server.sockets[0].getsockname()[1]
    await close_server(server)


async def connect(port: int) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = Conn(reader, writer)
    await conn.line()  # greeting
    return conn


async def test_imap_starttls_drops_a_command_pipelined_in_the_same_packet(
    ctx: EngineContext, imap_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The adapter reads 12 octets at a time: "a STARTTLS\r\n" reaches the core, the
    # injected command stays in the stream reader's buffer (as any read size allows
    # for a long enough packet), where the old adapter left it to run inside TLS.
    monkeypatch.setattr(imap_server, "READ_CHUNK", len(b"a STARTTLS\r\n"))
    conn = await connect(imap_port)
    conn.send(b"a STARTTLS\r\nb LOGIN bob@b.example bob-pass\r\n")
    assert (await conn.until(b"a "))[-1].startswith(b"a OK")
    await conn.writer.start_tls(ctx.tls.client_context, server_hostname="localhost")
    conn.send(b"c NOOP\r\n")
    lines = await conn.until(b"c ")
    assert not any(line.startswith(b"b ") for line in lines)  # never executed
    conn.send(b"d SELECT INBOX\r\n")  # and so nobody is logged in
    assert (await conn.until(b"d "))[-1].startswith(b"d BAD")
    conn.writer.close()


async def test_imap_stalled_starttls_handshake_is_cut(ctx: EngineContext) -> None:
    stalled = endpoint("IMAP", tls_handshake_timeout=0.5)
    server = await imap_server.start_imap_server(ctx, stalled)
    conn = await connect(server.sockets[0].getsockname()[1])
    conn.send(b"a STARTTLS\r\n")
    assert (await conn.until(b"a "))[-1].startswith(b"a OK")
    # No ClientHello follows: the server gives up after the endpoint's 0.5 s.
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    conn.writer.close()
    await close_server(server)


async def test_imap_exception_in_a_command_is_logged_answered_and_closes(
    imap_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(conn: object, cmd: object) -> None:
        raise ZeroDivisionError("a bug in a handler")

    _, states, expunge = imap_core.COMMANDS["NOOP"]
    monkeypatch.setitem(imap_core.COMMANDS, "NOOP", (broken, states, expunge))
    conn = await connect(imap_port)
    with caplog.at_level(logging.ERROR, logger="mailflow.engines"):
        conn.send(b"a NOOP\r\n")
        assert await conn.line() == b"* BYE [SERVERBUG] Internal server error\r\n"
        assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    (record,) = [r for r in caplog.records if r.name == "mailflow.engines"]
    assert "IMAP session" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


async def test_pop3_bug_is_not_a_quiet_err_but_a_storage_error_still_is(
    pop3_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def read(self: object, user: str, key: str) -> bytes:
        calls.append(key)
        if len(calls) == 1:
            raise FileNotFoundError(key)  # the disk: an ordinary -ERR, the session goes on
        raise ZeroDivisionError("a bug in the backend")

    monkeypatch.setattr(pop3_server.Pop3Maildrops, "read", read)
    conn = await connect(pop3_port)
    conn.send(b"USER bob@b.example\r\nPASS bob-pass\r\n")
    await conn.until(b"+OK")
    assert (await conn.until(b"+OK bob"))[-1].startswith(b"+OK bob@b.example has 1")
    conn.send(b"RETR 1\r\n")
    assert (await conn.line()).startswith(b"-ERR [SYS/TEMP]")
    with caplog.at_level(logging.ERROR, logger="mailflow.engines"):
        conn.send(b"RETR 1\r\n")
        assert (await conn.line()).startswith(b"-ERR [SYS/PERM] internal server error")
        assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    (record,) = [r for r in caplog.records if r.name == "mailflow.engines"]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError

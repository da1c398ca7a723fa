"""STARTTLS on the aiosmtpd-based listeners (the tap's `smtp_STARTTLS`, which hands the
handshake to the event loop's `start_tls`), over real loopback TCP, on both event loops
the product runs: asyncio's (tests, scenario runs) and uvloop's (the lab's processes).

Each test starts its own loop, runs the servers in it, and drives them from a worker
thread with Python's smtplib or a raw socket wrapped in `ssl`."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from waiting import HANG_GUARD

from app.engines.base import Endpoint, EngineContext
from app.engines.smtp_policies import InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import Spool

MESSAGE = b"From: alice@a.example\r\nTo: bob@b.example\r\nSubject: hi\r\n\r\nHello Bob\r\n"
RUNNERS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


class Servers:
    """The submission listener (587) and Bob's MX (25), as the lab runs them."""

    def __init__(self, root: Path, tls: LabTLS, handshake_timeout: float) -> None:
        self.recorder = Recorder()
        self.tls = tls
        self.outbound = Spool(root / "out")
        self.inbound = Spool(root / "in")
        accounts = Accounts()
        self.ctx = EngineContext(MailStore(root / "mail"), accounts, tls, self.recorder.emit)
        # Silence before a login is allowed far longer than the handshake: what cuts a
        # stalled handshake below is the handshake limit, not the idle timer.
        limits: dict[str, Any] = {
            "login_timeout": 120.0,
            "tls_handshake_timeout": handshake_timeout,
        }
        self.endpoints = {
            "submission": Endpoint(
                1, "SMTP", 587, "msa-a", "mua-alice", "mail.a.example", **limits
            ),
            "submissions": Endpoint(
                1, "SMTP", 465, "msa-a", "mua-alice", "mail.a.example", implicit_tls=True, **limits
            ),
            "mx": Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example", **limits),
        }
        self.policies = {
            "submission": SubmissionPolicy(accounts, self.outbound, "mail.a.example"),
            "submissions": SubmissionPolicy(accounts, self.outbound, "mail.a.example"),
            "mx": InboundPolicy(accounts, {"b.example"}, self.inbound, "mx.b.example"),
        }
        self.ports: dict[str, int] = {}
        self.servers: list[asyncio.Server] = []

    async def __aenter__(self) -> Servers:
        for name, endpoint in self.endpoints.items():
            server = await start_smtp_server(
                self.ctx, endpoint, self.policies[name], require_auth=name != "mx"
            )
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


def run(runner: str, test: Callable[[Servers], Coroutine[Any, Any, None]], root: Path,
        tls: LabTLS, handshake_timeout: float = 30.0) -> None:
    async def main() -> None:
        async with Servers(root, tls, handshake_timeout) as servers:
            await test(servers)

    RUNNERS[runner](main())


def read_reply(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """Read one whole reply (the last line has a space after the code)."""
    data = b""
    while True:
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(x) >= 4 and x[3:4] == b" " for x in lines[:-1]):
            return data
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def agreed_to_starttls(port: int) -> socket.socket:
    """A raw connection whose STARTTLS the server has just answered 220: the next
    bytes are the client's part of the handshake (or whatever a test sends instead)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    read_reply(raw)
    raw.sendall(b"EHLO client.example\r\n")
    read_reply(raw)
    raw.sendall(b"STARTTLS\r\n")
    assert read_reply(raw).startswith(b"220")
    return raw


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


loops = pytest.mark.parametrize("runner", list(RUNNERS))


@loops
@pytest.mark.parametrize("service", ["submission", "mx"])
def test_starttls_then_mail_and_the_tap_shows_the_decrypted_lines(
    runner: str, service: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    def talk(port: int) -> dict:
        with smtplib.SMTP("127.0.0.1", port, timeout=HANG_GUARD) as c:
            c.ehlo("client.a.example")
            assert c.starttls(context=lab_tls.client_context)[0] == 220
            assert c.sock.version() is not None  # really TLS from here on
            c.ehlo("client.a.example")
            assert not c.has_extn("starttls")  # inside TLS it is no longer offered
            if service == "submission":
                c.login("alice@a.example", "alice-pass")
            return c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

    async def test(servers: Servers) -> None:
        assert await asyncio.to_thread(talk, servers.ports[service]) == {}
        queue = servers.outbound if service == "submission" else servers.inbound
        [entry] = queue.entries()
        trace = entry.data.split(b"\r\n\r\n")[0]
        # session.ssl was set: the trace says ESMTPS (+A after AUTH), RFC 3848.
        assert (b"with ESMTPSA" if service == "submission" else b"with ESMTPS ") in trace
        events = servers.recorder.events
        texts = [e.text for e in events]
        handshake = next(i for i, e in enumerate(events) if e.key == "tls.handshake")
        assert events[handshake - 1].text.startswith("220")  # right after "220 Ready"
        assert "TLS" in events[handshake].text
        assert all(not e.tls for e in events[:handshake])
        after = events[handshake + 1 :]
        assert all(e.tls for e in after)
        assert texts.count("ehlo client.a.example") == 2  # smtplib writes it in lower case
        assert after[0].text == "ehlo client.a.example"
        assert any(e.text.startswith("mail FROM:<alice@a.example>") for e in after)
        content = next(e for e in after if e.key == "smtp.data.content")
        assert "Hello Bob" in content.text

    run(runner, test, tmp_path, lab_tls)


@loops
def test_implicit_tls_on_465_and_a_stalled_handshake_there(
    runner: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    """465 is TLS from the first byte (the listener's own ssl=, on either loop's TLS
    layer); a handshake that stalls is cut by the listener's limit."""

    def submit(port: int) -> dict:
        with smtplib.SMTP_SSL(
            "127.0.0.1", port, timeout=HANG_GUARD, context=lab_tls.client_context
        ) as c:
            c.login("alice@a.example", "alice-pass")
            return c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

    def stall(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # cut off
            return read_until_closed(raw)

    async def test(servers: Servers) -> None:
        port = servers.ports["submissions"]
        assert await asyncio.to_thread(submit, port) == {}
        assert servers.recorder.events[0].key == "tls.handshake"
        assert all(e.tls for e in servers.recorder.events)
        assert await asyncio.to_thread(stall, port) == b""
        await asyncio.wait_for(servers.endpoints["submissions"].wait_until_idle(), HANG_GUARD)

    run(runner, test, tmp_path, lab_tls, handshake_timeout=0.5)


@loops
def test_plaintext_pipelined_after_starttls_is_dropped(
    runner: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    """RFC 3207 §4.2 (the CVE-2011-0411 class): a command a man in the middle appends
    after STARTTLS in the same packet is never executed, inside TLS or out, and the 220
    still comes at once."""

    def talk(port: int) -> tuple[bytes, bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as raw:
            read_reply(raw)
            raw.sendall(b"EHLO client.example\r\n")
            read_reply(raw)
            raw.sendall(b"STARTTLS\r\nNOOP injected\r\n")
            ready = read_reply(raw)
            tls = lab_tls.client_context.wrap_socket(raw, server_hostname="mx.b.example")
            tls.sendall(b"EHLO client.example\r\n")
            ehlo = read_reply(tls)
            tls.sendall(b"QUIT\r\n")
            return ready, ehlo, read_until_closed(tls)

    async def test(servers: Servers) -> None:
        ready, ehlo, rest = await asyncio.to_thread(talk, servers.ports["mx"])
        assert ready == b"220 2.0.0 Ready to start TLS\r\n"
        # The first answer inside TLS is the EHLO's, not a NOOP's "250 2.0.0 Ok".
        assert ehlo.startswith(b"250-mx.b.example\r\n")
        assert rest == b"221 2.0.0 Bye\r\n"

    run(runner, test, tmp_path, lab_tls)


class EarlyClient:
    """A TLS client that sends its last handshake flight and its first command in one
    write, so both reach the server in one read: the command is decrypted before the
    server's STARTTLS has taken over the new transport."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)

    def handshake_then(self, command: bytes) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self.incoming.write(self.sock.recv(65536))
        self.obj.write(command)
        self.sock.sendall(self.outgoing.read())  # client Finished + the command

    def reply(self) -> bytes:
        data = b""
        while not data.endswith(b"\r\n") or not any(
            len(x) >= 4 and x[3:4] == b" " for x in data.split(b"\r\n")[:-1]
        ):
            try:
                data += self.obj.read(65536)
            except ssl.SSLWantReadError:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                self.incoming.write(chunk)
        return data


@loops
def test_a_command_sent_with_the_last_handshake_flight_is_answered(
    runner: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    def talk(port: int) -> bytes:
        with agreed_to_starttls(port) as raw:
            client = EarlyClient(raw, lab_tls.client_context, "mx.b.example")
            client.handshake_then(b"EHLO early.example\r\n")
            return client.reply()

    async def test(servers: Servers) -> None:
        reply = await asyncio.to_thread(talk, servers.ports["mx"])
        assert reply.startswith(b"250-mx.b.example\r\n")
        events = servers.recorder.events
        early = next(e for e in events if e.text == "EHLO early.example")
        handshake = next(e for e in events if e.key == "tls.handshake")
        assert early.tls and handshake.seq < early.seq  # shown inside TLS, after it began

    run(runner, test, tmp_path, lab_tls)


@loops
@pytest.mark.parametrize("client_sends", ["nothing", "half a ClientHello", "garbage"])
def test_a_stalled_or_failed_handshake_closes_cleanly(
    runner: str, client_sends: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    payload = {
        "nothing": b"",
        "half a ClientHello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "garbage": b"EHLO not-tls\r\n" * 4,
    }[client_sends]

    def talk(port: int) -> bytes:
        with agreed_to_starttls(port) as raw:
            raw.sendall(payload)
            # The server closes. The guard is below asyncio's own 60 s handshake limit,
            # which alone cut a stalled STARTTLS handshake before.
            raw.settimeout(30)
            return read_until_closed(raw)

    def served(port: int) -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=HANG_GUARD) as c:
            c.starttls(context=lab_tls.client_context)
            return c.noop()[0]

    async def test(servers: Servers) -> None:
        endpoint = servers.endpoints["submission"]
        after = await asyncio.to_thread(talk, servers.ports["submission"])
        # Nothing in clear after the 220 (no 421 written into a TLS stream); for garbage
        # at most a TLS alert record.
        assert after == b"" or after[:1] == b"\x15"
        await asyncio.wait_for(endpoint.wait_until_idle(), HANG_GUARD)  # its slot is free
        assert await asyncio.to_thread(served, servers.ports["submission"]) == 250

    run(runner, test, tmp_path, lab_tls, handshake_timeout=0.5)


@loops
def test_a_second_starttls_inside_tls_is_refused_and_the_session_goes_on(
    runner: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    """RFC 3207 §4: a client must not start TLS again while a TLS session is on. The
    server says so and keeps the session (as Postfix: "554 5.5.1 Error: TLS already
    active"), instead of starting a handshake inside TLS or dropping the connection."""

    def talk(port: int) -> tuple[int, int, dict]:
        with smtplib.SMTP("127.0.0.1", port, timeout=HANG_GUARD) as c:
            c.ehlo("client.a.example")
            assert c.starttls(context=lab_tls.client_context)[0] == 220
            c.ehlo("client.a.example")
            again = c.docmd("STARTTLS")[0]
            noop = c.noop()[0]
            return again, noop, c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

    async def test(servers: Servers) -> None:
        again, noop, refused = await asyncio.to_thread(talk, servers.ports["mx"])
        assert (again, noop, refused) == (554, 250, {})
        assert len(servers.inbound.entries()) == 1

    run(runner, test, tmp_path, lab_tls)


@loops
def test_the_idle_timer_firing_during_a_handshake_frees_the_slot(
    runner: str, tmp_path: Path, lab_tls: LabTLS
) -> None:
    """Where the idle limit is no longer than the handshake limit (here the MX, whose
    idle timer was reset by the STARTTLS command just before the handshake began), the
    idle timer is what cuts a stalled handshake: the connection closes and its slot is
    freed for the next client."""

    def stall(port: int) -> bytes:
        with agreed_to_starttls(port) as raw:
            return read_until_closed(raw)  # no ClientHello: the server gives up

    def served(port: int) -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=HANG_GUARD) as c:
            c.starttls(context=lab_tls.client_context)
            return c.noop()[0]

    async def main() -> None:
        servers = Servers(tmp_path, lab_tls, handshake_timeout=30.0)
        endpoint = servers.endpoints["mx"]
        endpoint.idle_timeout = endpoint.login_timeout = 0.5
        endpoint.max_connections = 1  # a slot not given back refuses the next client
        async with servers:
            after = await asyncio.to_thread(stall, servers.ports["mx"])
            assert after == b"" or after[:1] == b"\x15"  # nothing in clear into TLS
            await asyncio.wait_for(endpoint.wait_until_idle(), HANG_GUARD)
            assert await asyncio.to_thread(served, servers.ports["mx"]) == 250

    RUNNERS[runner](main())

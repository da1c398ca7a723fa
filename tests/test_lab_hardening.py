"""Hostile or careless clients against the lab listeners: each one gets an error or a
timeout, and costs the other clients nothing."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from waiting import HANG_GUARD

from app.engines.smtp_tap import WireTap
from app.engines.tls import LabTLS
from app.events import Recorder, Tap
from app.lab.world import SERVICES, LabWorld
from app.world.accounts import Accounts

IDLE = 1.0


@pytest.fixture
async def lab(tmp_path: Path, lab_tls: LabTLS):
    world = LabWorld(
        tmp_path / "lab",
        lab_tls,
        Accounts(),
        lambda e: None,
        ports={s.name: 0 for s in SERVICES},
        idle_timeout=IDLE,
    )
    await world.start()
    yield world
    await world.close()


def read_until_closed(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def read_reply(sock: socket.socket, marker: bytes) -> bytes:
    """Read until a complete line containing `marker` has come (or the peer closed)."""
    data = b""
    while not any(marker in line for line in data.split(b"\r\n")[:-1]):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def served(lab: LabWorld) -> bool:
    """A new client gets its greeting. (Only the greeting: on this busy machine a NOOP
    sent after it may come later than the fixture's one-second idle limit.)"""
    c = smtplib.SMTP(timeout=30)
    try:
        return c.connect("127.0.0.1", lab.ports["submission"])[0] == 220
    finally:
        c.close()


@pytest.mark.parametrize(
    ("service", "goodbye"),
    [
        ("submission", b"421 4.4.2"),
        ("smtp", b"421 4.4.2"),
        ("pop3", b"-ERR"),
        ("imap", b"* BYE"),
    ],
)
async def test_idle_sessions_are_told_and_closed(
    lab: LabWorld, service: str, goodbye: bytes
) -> None:
    def idle() -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", lab.ports[service]), timeout=5) as s:
            started = time.monotonic()
            data = read_until_closed(s, IDLE + 8)
            return data, time.monotonic() - started

    data, waited = await asyncio.to_thread(idle)
    last_line = data.strip().splitlines()[-1]
    assert last_line.startswith(goodbye), data
    assert IDLE * 0.8 <= waited < IDLE + 6


@pytest.mark.parametrize("service", ["submissions", "pop3s", "imaps"])
async def test_a_half_open_tls_handshake_times_out(lab: LabWorld, service: str) -> None:
    stalled = threading.Event()

    def half_open() -> float:
        with socket.create_connection(("127.0.0.1", lab.ports[service]), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut off
            started = time.monotonic()
            stalled.set()
            read_until_closed(s, 70)
            return time.monotonic() - started

    waiter = asyncio.create_task(asyncio.to_thread(half_open))
    assert await asyncio.to_thread(stalled.wait, HANG_GUARD)  # the stalled handshake is on
    assert await asyncio.to_thread(served, lab)  # others are served meanwhile
    # The server cut it (read_until_closed saw EOF, not its own 70 s limit); the
    # handshake limit here is the 1 s idle limit, so 35 s leaves room for a slow machine.
    assert await waiter < 35


async def test_starttls_then_silence_is_cut(lab: LabWorld) -> None:
    def silent() -> float:
        with socket.create_connection(("127.0.0.1", lab.ports["submission"]), timeout=5) as s:
            s.recv(200)
            s.sendall(b"EHLO x\r\n")
            read_reply(s, b"250 ")  # the whole multi-line EHLO reply, up to its last line
            s.sendall(b"STARTTLS\r\n")
            assert s.recv(200).startswith(b"220")
            started = time.monotonic()
            read_until_closed(s, IDLE + 10)
            return time.monotonic() - started

    assert await asyncio.to_thread(silent) < IDLE + 7


@pytest.mark.parametrize("service", ["submission", "pop3", "imap"])
async def test_a_client_that_never_reads_costs_nobody_else(lab: LabWorld, service: str) -> None:
    hog = socket.create_connection(("127.0.0.1", lab.ports[service]), timeout=5)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    command = b"a NOOP\r\n" if service == "imap" else b"NOOP\r\n"
    hog.setblocking(False)
    sent = 0
    # Part of the setup, not a wait for "done": push commands until 4 MiB or 3 s. How
    # much got in does not matter to the assertions (others served, the hog cut).
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sent < 4 * 1024 * 1024:
        try:
            sent += hog.send(command * 512)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    assert await asyncio.to_thread(served, lab)
    endpoint = lab.endpoints[service]
    # The stuck connection is cut by the idle timer plus the close grace period; the
    # bound only keeps a broken build from hanging the suite.
    try:
        await asyncio.wait_for(endpoint.wait_until_idle(), 120)
    finally:
        hog.close()
    assert endpoint.active == 0


@pytest.mark.parametrize(
    ("service", "error"),
    [
        ("smtp", b"500"),
        ("pop3", b"-ERR"),
        ("imap", b"BAD"),
    ],
)
async def test_binary_garbage_gets_the_protocol_error(
    lab: LabWorld, service: str, error: bytes
) -> None:
    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", lab.ports[service]), timeout=5) as s:
            s.recv(500)
            s.sendall(b"\x00\xff\x13\x37 \x00\x00garbage\r\n")
            return read_reply(s, error)  # the reply line that carries the error

    assert error in await asyncio.to_thread(talk)
    assert await asyncio.to_thread(served, lab)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.text(max_size=80), max_size=10))
def test_the_smtp_wire_tap_never_raises(chunks: list[bytes], replies: list[str]) -> None:
    recorder = Recorder()
    wire = WireTap(Tap(recorder.emit, 1, "c", "s", "SMTP", 587), "smtp")
    for i, chunk in enumerate(chunks):
        wire.received(chunk)
        if i < len(replies):
            wire.pushed(replies[i])
    for event in recorder.events:
        assert event.key.startswith(("smtp.", "tls."))
        assert event.direction in ("c2s", "s2c", "note")


async def test_a_client_that_keeps_talking_is_not_cut(tmp_path: Path, lab_tls: LabTLS) -> None:
    # The idle timer moves with every command; only silence for `idle` seconds ends a
    # session. The pauses are what is tested (a client talking slowly), so they stay;
    # each is a sixth of the limit, so a stalled scheduler (up to 2.5 s) cannot make
    # one of them look like silence, and together they last longer than the limit.
    idle, pause = 3.0, 0.5
    lab = LabWorld(
        tmp_path / "lab",
        lab_tls,
        Accounts(),
        lambda e: None,
        ports={s.name: 0 for s in SERVICES},
        idle_timeout=idle,
    )
    await lab.start()

    def chatty() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", lab.ports["submission"]), timeout=10) as s:
            s.recv(200)
            replies = []
            for _ in range(8):  # 4 s in all, longer than `idle`
                time.sleep(pause)
                s.sendall(b"NOOP\r\n")
                replies.append(read_reply(s, b"250"))
            return replies

    try:
        replies = await asyncio.to_thread(chatty)
    finally:
        await lab.close()
    assert all(r.startswith(b"250") for r in replies), replies

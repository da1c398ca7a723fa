"""A graceful stop of the lab (stdin EOF, SIGTERM) lets deliveries in flight finish.

When the web process dies, the lab process sees its stdin close and stops. Its stages
used to cancel their deliveries in flight: a relay cancelled after the MX's 250 kept its
outbound entry, an LMTP delivery cancelled after the MDA's 250 kept its inbound entry,
and after the restart each hop sent its mail again (three copies of one mail). Here the
next hop is a real SMTP/LMTP listener the test holds at the final ".": the stop begins
while the hop waits for its 250, then the test releases the 250.
"""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import sys
from collections.abc import Callable
from pathlib import Path

from waiting import HANG_GUARD, wait_until_async

from app.engines.tls import LabTLS
from app.lab.world import SERVICES, LabWorld
from app.topology import HOST_B
from app.world.accounts import Accounts
from app.world.spool import Spool

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"From: alice@a.example\r\nTo: bob@b.example\r\nSubject: drain\r\n\r\nonce\r\n"


class HeldHop:
    """The next hop, an SMTP (RFC 5321) or LMTP (RFC 2033) server, that answers the
    message's final "." only once the test sets `release`. A mail it accepts goes into
    `spool` before its 250, as a real MX queues it (none for an MDA: it counts copies)."""

    def __init__(self, spool: Spool | None = None) -> None:
        self.spool = spool
        self.holding = asyncio.Event()  # a message waits for its 250
        self.release = asyncio.Event()
        self.copies: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 held ESMTP\r\n")
        sender, rcpts = "", []
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"MAIL":
                sender, rcpts = line.decode().split("<", 1)[1].split(">")[0], []
                writer.write(b"250 ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(line.decode().split("<", 1)[1].split(">")[0])
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = b""
                while (chunk := await reader.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.holding.set()
                await self.release.wait()
                self.copies.append(data)
                if self.spool is not None:
                    await asyncio.to_thread(self.spool.put, sender, rcpts, data)  # then 250
                replies = len(rcpts) if self.spool is None else 1  # LMTP: one per rcpt
                writer.write(b"250 accepted\r\n" * replies)
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:  # EHLO/LHLO (no extensions offered), RSET, NOOP
                writer.write(b"250 held\r\n")
            await writer.drain()
        writer.close()


def queued(*spools: Spool) -> list[str]:
    return [qid for spool in spools for qid in spool.qids()]



async def stop_while_held(lab: LabWorld, hop: HeldHop, draining: Callable[[], bool]) -> None:
    """Once `hop` holds a delivery's 250, stop the lab (what stdin EOF or SIGTERM runs)
    and let the 250 come only while the lab is stopping; wait until it has stopped."""
    async with asyncio.timeout(HANG_GUARD):
        await hop.holding.wait()
    closing = asyncio.create_task(lab.close())
    await wait_until_async(draining, "the stop to begin")
    hop.release.set()
    async with asyncio.timeout(HANG_GUARD):
        await closing

async def test_a_stop_during_the_relay_lets_the_mx_250_remove_the_outbound_entry(
    tmp_path: Path, lab_tls: LabTLS
) -> None:
    ports = {s.name: 0 for s in SERVICES}
    lab = LabWorld(tmp_path / "lab", lab_tls, Accounts(), lambda e: None, ports=ports)
    await lab.start()
    mx = HeldHop(lab.inbound[HOST_B])
    server = await asyncio.start_server(mx.serve, "127.0.0.1", 0)
    try:
        # b.example's MX is the held one now: the relay hop waits there for its 250.
        for record in lab.dns.query(HOST_B, "A"):
            lab.network.attach(record.value, 25, ("127.0.0.1", server.sockets[0].getsockname()[1]))

        def submit() -> None:
            with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=10) as c:
                c.starttls(context=lab.tls.client_context)
                c.login("alice@a.example", "alice-pass")
                c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

        await asyncio.to_thread(submit)
        await stop_while_held(lab, mx, lambda: lab._relay.draining)
    finally:
        server.close()
        await server.wait_closed()
    assert [c.endswith(b"Subject: drain\r\n\r\nonce\r\n") for c in mx.copies] == [True]
    assert queued(lab.outbound) == [], "the relay was cut off after the MX's 250"

    again = LabWorld(lab.dir, lab_tls, Accounts(), lambda e: None, ports=ports)
    await again.start()  # its MX is the real one: it would relay a left-over entry again
    try:
        inbox = again.store.folder("bob@b.example")
        await wait_until_async(
            lambda: not queued(again.outbound, *again.inbound.values()) and inbox.messages(),
            "the restarted lab to deliver what its queues hold",
        )
        assert len(inbox.messages()) == 1
    finally:
        await again.close()


async def test_a_stop_during_lmtp_lets_the_mda_250_remove_the_inbound_entry(
    tmp_path: Path, lab_tls: LabTLS
) -> None:
    ports = {s.name: 0 for s in SERVICES}
    lab = LabWorld(tmp_path / "lab", lab_tls, Accounts(), lambda e: None, ports=ports)
    await lab.start()
    mda = HeldHop()
    held = str(tmp_path / "held")
    server = await asyncio.start_unix_server(mda.serve, held)
    spool = lab.inbound[HOST_B]
    try:
        lab.hops.lmtp_socket = held  # the MDA is the held one: delivery waits there for its 250
        spool.put("alice@a.example", ["bob@b.example"], MESSAGE)
        lab.wake()
        await stop_while_held(lab, mda, lambda: lab.hops.stage.draining)
    finally:
        server.close()
        await server.wait_closed()
    assert [c.endswith(b"Subject: drain\r\n\r\nonce\r\n") for c in mda.copies] == [True]
    assert queued(spool) == [], "the delivery was cut off after the MDA's 250"

    # A restart with the real MDA: a marker mail shows its first listing is done.
    again = LabWorld(lab.dir, lab_tls, Accounts(), lambda e: None, ports=ports)
    await again.start()
    spool.put("alice@a.example", ["bob@b.example"], MESSAGE.replace(b"once", b"marker"))
    again.wake()
    try:
        inbox = again.store.folder("bob@b.example")
        await wait_until_async(
            lambda: not queued(*again.inbound.values()) and inbox.messages(),
            "the restarted lab to deliver what its queues hold",
        )
        bodies = [inbox.read(m.key) for m in inbox.messages()]
        assert [b"marker" in body for body in bodies] == [True]  # no second copy of "once"
    finally:
        await again.close()


async def test_sigterm_stops_the_lab_process_the_graceful_way(
    tmp_path: Path, lab_tls: LabTLS
) -> None:
    """SIGTERM takes the same path as stdin EOF (the drain above) and exits 0; it used to
    kill the process outright, cutting off whatever was in flight."""
    config = {
        "data_dir": str(tmp_path / "lab"),
        "tls_dir": str(lab_tls.directory),
        "passwords": Accounts().passwords,
        "domains": sorted(Accounts().domains),
        "host": "127.0.0.1",
        "ports": {s.name: 0 for s in SERVICES},
        "session_prefix": "t-",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.lab.process",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(config).encode() + b"\n")
    try:
        async with asyncio.timeout(HANG_GUARD):
            assert "submission" in json.loads(await proc.stdout.readline())["ports"]
            proc.send_signal(signal.SIGTERM)  # stdin stays open: only the signal stops it
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

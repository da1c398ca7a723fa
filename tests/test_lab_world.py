"""Lab mode's mail world: real clients on the lab listeners, the full pipeline behind them."""

from __future__ import annotations

import asyncio
import imaplib
import poplib
import smtplib
import socket
import subprocess
from pathlib import Path

import pytest
from waiting import HANG_GUARD, wait_until_async

from app.engines import imap_server
from app.engines.tls import LabTLS
from app.events import Event
from app.lab.commands import commands_for
from app.lab.hub import Hub
from app.lab.live import LiveSink
from app.lab.world import SERVICES, LabWorld
from app.world.accounts import Accounts

MESSAGE = "From: alice@a.example\r\nTo: bob@b.example\r\nSubject: lab test\r\n\r\nHi Bob\r\n"


@pytest.fixture
async def lab(tmp_path: Path, lab_tls: LabTLS):
    hub = Hub()
    world = LabWorld(
        tmp_path / "lab", lab_tls, Accounts(), LiveSink(hub), ports={s.name: 0 for s in SERVICES}
    )
    world.hub = hub  # type: ignore[attr-defined]
    await world.start()
    yield world
    await world.close()


def submit(lab: LabWorld, rcpts: list[str] | None = None) -> dict:
    with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=10) as c:
        c.starttls(context=lab.tls.client_context)
        c.login("alice@a.example", "alice-pass")
        return c.sendmail("alice@a.example", rcpts or ["bob@b.example"], MESSAGE)


async def wait_for_inbox(lab: LabWorld, user: str, count: int) -> None:
    """Until the MDA has written `count` messages (the loop serves meanwhile)."""
    folder = lab.store.folder(user)
    await wait_until_async(
        lambda: len(folder.messages()) >= count, f"{count} message(s) for {user}"
    )


async def test_submitted_mail_travels_the_pipeline(lab: LabWorld) -> None:
    # How fast is bench/'s business (a latency bound here would fail on a busy machine).
    assert await asyncio.to_thread(submit, lab) == {}
    await wait_for_inbox(lab, "bob@b.example", 1)

    def read_pop3() -> bytes:
        pop = poplib.POP3("127.0.0.1", lab.ports["pop3"], timeout=10)
        pop.stls(context=lab.tls.client_context)
        pop.user("bob@b.example")
        pop.pass_("bob-pass")
        lines = pop.retr(1)[1]
        pop.quit()
        return b"\r\n".join(lines)

    def read_imaps() -> bytes:
        with imaplib.IMAP4_SSL(
            "127.0.0.1", lab.ports["imaps"], ssl_context=lab.tls.client_context
        ) as m:
            m.login("bob@b.example", "bob-pass")
            m.select("INBOX")
            return m.fetch("1", "(BODY.PEEK[])")[1][0][1]

    body = await asyncio.to_thread(read_pop3)
    assert b"Subject: lab test" in body and body.count(b"Received: from") == 3
    assert body.startswith(b"Return-Path: <alice@a.example>")
    assert b"Subject: lab test" in await asyncio.to_thread(read_imaps)

    # bob -> alice goes the other way round: MX of a.example, then LMTP.
    def bob_to_alice() -> None:
        with smtplib.SMTP_SSL(
            "127.0.0.1", lab.ports["submissions"], context=lab.tls.client_context, timeout=10
        ) as c:
            c.login("bob@b.example", "bob-pass")
            c.sendmail("bob@b.example", ["alice@a.example"], MESSAGE)

    await asyncio.to_thread(bob_to_alice)
    await wait_for_inbox(lab, "alice@a.example", 1)


async def test_mail_to_the_public_port_25_reaches_the_maildir(lab: LabWorld) -> None:
    # The app's port 25 queues into the inbound queue that the MX hops' stage delivers from.
    def deliver() -> dict:
        with smtplib.SMTP("127.0.0.1", lab.ports["smtp"], timeout=10) as c:
            c.ehlo("mta.example")
            return c.sendmail("carol@c.example", ["bob@b.example"], MESSAGE)

    assert await asyncio.to_thread(deliver) == {}
    await wait_for_inbox(lab, "bob@b.example", 1)


async def test_live_events_cover_all_four_panels(lab: LabWorld) -> None:
    hub: Hub = lab.hub  # type: ignore[attr-defined]
    queue = hub.subscribe()
    await asyncio.to_thread(submit, lab)
    await wait_for_inbox(lab, "bob@b.example", 1)

    def fetch() -> None:
        with imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=10) as m:
            m.starttls(ssl_context=lab.tls.client_context)
            m.login("bob@b.example", "bob-pass")
            m.select("INBOX")
            m.fetch("1", "(FLAGS)")

    await asyncio.to_thread(fetch)
    events: list[Event] = []
    while not queue.empty():
        events.append(queue.get_nowait().event)
    assert {e.panel for e in events} == {1, 2, 3, 4}
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    auth = next(e for e in events if e.text.startswith("AUTH PLAIN"))
    assert auth.detail["masked"] == "AUTH PLAIN ****"
    login = next(e for e in events if e.key == "imap.login")
    assert "bob-pass" not in login.detail["masked"]
    assert next(e for e in events if e.panel == 1 and e.direction == "c2s").src == "lab-client"
    assert any(e.key == "dns.query.mx" for e in events)


async def test_nothing_leaves_the_lab(lab: LabWorld) -> None:
    def talk(port: int, tls_first: bool) -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("outside.example")
            if tls_first:
                c.starttls(context=lab.tls.client_context)
                c.login("alice@a.example", "alice-pass")
            c.docmd("MAIL", "FROM:<alice@a.example>")
            return [
                c.docmd("RCPT", "TO:<friend@gmail.com>"),
                c.docmd("RCPT", "TO:<alice@a.example>"),
            ]

    outside, _ = await asyncio.to_thread(talk, lab.ports["submission"], True)
    assert outside[0] == 550 and b"5.7.1" in outside[1]
    outside, other_domain = await asyncio.to_thread(talk, lab.ports["smtp"], False)
    assert outside[0] == 554 and b"5.7.1" in outside[1]  # port 25 is no open relay
    assert other_domain[0] == 554  # mx.b.example is not a.example's MX

    def unauthenticated() -> int:
        with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=10) as c:
            c.ehlo("x")
            return c.docmd("MAIL", "FROM:<alice@a.example>")[0]

    assert await asyncio.to_thread(unauthenticated) == 530


async def test_copy_ready_commands_work_as_shown(lab: LabWorld, tmp_path: Path) -> None:
    workdir = tmp_path / "cmd"
    workdir.mkdir()
    (workdir / "mailflow-ca.pem").write_bytes(lab.tls.ca_file.read_bytes())
    outputs, sent = {}, 0
    for command in commands_for("127.0.0.1", lab.ports):
        proc = await asyncio.create_subprocess_shell(
            command.shell, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, (command.key, out.decode())
        outputs[command.key] = out.decode()
        if command.key.endswith("send") or command.key == "curl-send-smtps":
            sent += 1  # the readers run once the MDA has written it
            await wait_for_inbox(lab, "bob@b.example", sent)
    assert "Subject" in outputs["curl-pop3s-fetch"] and "Subject" in outputs["curl-imaps-fetch"]
    assert "* SEARCH 1" in outputs["curl-imap-list"]
    assert outputs["python-read"].startswith("messages: 1 2 3")
    assert len(lab.store.folder("bob@b.example").messages()) == 4


async def test_a_flood_of_connections_is_capped_and_others_keep_being_served(
    lab: LabWorld,
) -> None:
    def flood(port: int) -> list[bytes]:
        socks, greetings = [], []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        for s in socks:
            greetings.append(s.recv(200))
        for s in socks:
            s.close()
        return greetings

    for name, ok, busy in (
        ("pop3", b"+OK", b"-ERR"),
        ("submission", b"220", b"421"),
        ("imap", b"* OK", b"* BYE"),
    ):
        greetings = await asyncio.to_thread(flood, lab.ports[name])
        assert sum(g.startswith(ok) for g in greetings) == 50, name
        assert sum(g.startswith(busy) for g in greetings) == 150, name
        # The next flood starts once this service has closed all 200 connections.
        await asyncio.wait_for(lab.endpoints[name].wait_until_idle(), HANG_GUARD)
    # Everyone else is still served.
    assert await asyncio.to_thread(submit, lab) == {}


async def test_reset_empties_and_uids_survive_a_restart(lab: LabWorld, lab_tls: LabTLS) -> None:
    await asyncio.to_thread(submit, lab)
    await wait_for_inbox(lab, "bob@b.example", 1)
    inbox = lab.store.folder("bob@b.example")
    validity, first_uid = inbox.uidvalidity, inbox.messages()[0].uid
    await lab.close()
    again = LabWorld(
        lab.dir, lab_tls, Accounts(), lambda e: None, ports={s.name: 0 for s in SERVICES}
    )
    await again.start()
    try:
        box = again.store.folder("bob@b.example")
        assert box.uidvalidity == validity and box.messages()[0].uid == first_uid
        assert again.reset_mailboxes() == 1
        assert box.messages() == []
        assert box.uidnext == first_uid + 1  # UIDs never go back (RFC 3501 §2.3.1.1)
    finally:
        await again.close()


async def test_imap_idle_hears_a_delivery_through_the_pipeline(
    lab: LabWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The MDA and the IMAP listener share the lab's loop: the delivery itself tells the
    # idling session (RFC 2177), with the once-a-second poll moved out of reach.
    monkeypatch.setattr(imap_server, "IDLE_POLL_SECONDS", 3600.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", lab.ports["imap"])

    async def until(prefix: bytes) -> bytes:
        async with asyncio.timeout(HANG_GUARD):
            while not (line := await reader.readline()).startswith(prefix):
                assert line, "connection closed"
        return line

    try:
        await until(b"* OK")
        writer.write(b"s STARTTLS\r\n")
        await until(b"s OK")
        await writer.start_tls(lab.tls.client_context)
        writer.write(b"a LOGIN bob@b.example bob-pass\r\nb SELECT INBOX\r\n")
        await until(b"b OK")
        writer.write(b"c IDLE\r\n")
        await until(b"+ ")
        assert await asyncio.to_thread(submit, lab) == {}
        assert await until(b"* ") == b"* 1 EXISTS\r\n"
        writer.write(b"DONE\r\n")
        await until(b"c OK")
    finally:
        writer.close()

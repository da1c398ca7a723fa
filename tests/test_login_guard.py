"""The one back-off rule for failed logins (SMTP AUTH, POP3, IMAP) and the short
silence allowed before a login, over real listeners on loopback."""

from __future__ import annotations

import asyncio
import base64
import imaplib
import poplib
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from waiting import HANG_GUARD

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.imap_server import start_imap_server
from app.engines.login_guard import LoginGuard, address_key
from app.engines.pop3_server import start_pop3_server
from app.engines.smtp_policies import SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import Spool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delay_doubles_up_to_the_cap_and_decays() -> None:
    clock = Clock()
    guard = LoginGuard(base=0.25, cap=2.0, half_life=60.0, clock=clock)
    delays = [guard.failed("192.0.2.7").delay for _ in range(6)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert guard.failures("192.0.2.8") == 0.0  # another address is not touched
    clock.now += 120.0  # two half-lives
    assert guard.failures("192.0.2.7") == pytest.approx(1.5)
    assert guard.failed("192.0.2.7").delay == pytest.approx(0.25 * 2**1.5)


def test_memory_stays_bounded_under_a_flood_of_addresses() -> None:
    guard = LoginGuard(max_addresses=100, clock=Clock())
    for n in range(10_000):
        guard.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(guard) == 100
    assert guard.failures("10.0.39.15") == 1.0  # the newest are kept
    assert guard.failures("10.0.0.0") == 0.0  # the oldest went first


def test_ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"


# -- the three protocols on one context, as in the lab ----------------------------------


class Servers:
    def __init__(self, root: Path, tls: LabTLS, **limits: float) -> None:
        self.recorder = Recorder()
        self.tls = tls
        store = MailStore(root / "mail")
        store.deliver("bob@b.example", b"Subject: hi\n\nHello\n")
        self.ctx = EngineContext(
            store, Accounts(), tls, self.recorder.emit, guard=LoginGuard(base=0.01, cap=0.2)
        )
        self.outbound = Spool(root / "out")
        self.limits = limits
        self.ports: dict[str, int] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        for name, proto, port in (
            ("smtp", "SMTP", 465),
            ("pop3", "POP3", 995),
            ("imap", "IMAP", 993),
        ):
            endpoint = Endpoint(1, proto, port, "srv", "cli", implicit_tls=True, **self.limits)  # type: ignore[arg-type]
            if proto == "SMTP":
                policy = SubmissionPolicy(self.ctx.accounts, self.outbound, "mail.a.example")
                server = await start_smtp_server(self.ctx, endpoint, policy, require_auth=True)
            elif proto == "POP3":
                server = await start_pop3_server(self.ctx, endpoint)
            else:
                server = await start_imap_server(self.ctx, endpoint)
            self.servers.append(server)
            self.endpoints[name] = endpoint
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def settle(self) -> None:
        """Until every connection is closed on the server's side (the endpoints say so)."""
        async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a guess
            for endpoint in self.endpoints.values():
                await endpoint.wait_until_idle()


@pytest.fixture
async def servers(tmp_path: Path, lab_tls: LabTLS) -> AsyncIterator[Servers]:
    s = Servers(tmp_path, lab_tls)
    await s.start()
    yield s
    for server in s.servers:
        await close_server(server)


async def test_failures_add_up_across_connections_and_protocols(servers: Servers) -> None:
    ctx = servers.tls.client_context

    def smtp() -> int:
        with smtplib.SMTP_SSL("127.0.0.1", servers.ports["smtp"], context=ctx, timeout=10) as c:
            c.ehlo("x")
            # One AUTH PLAIN (smtplib's login() would go on to try LOGIN as well).
            blob = base64.b64encode(b"\0alice@a.example\0wrong").decode()
            return c.docmd("AUTH", f"PLAIN {blob}")[0]

    def pop3() -> None:
        pop = poplib.POP3_SSL("127.0.0.1", servers.ports["pop3"], context=ctx, timeout=10)
        pop.user("bob@b.example")
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
        pop.quit()

    def imap() -> None:
        port = servers.ports["imap"]
        with (
            imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx) as m,
            pytest.raises(imaplib.IMAP4.error),
        ):
            m.login("bob@b.example", "wrong")

    assert await asyncio.to_thread(smtp) == 535
    await asyncio.to_thread(pop3)
    await asyncio.to_thread(imap)
    await asyncio.to_thread(pop3)
    await servers.settle()
    events = servers.recorder.events
    notes = [e for e in events if e.key == "login.backoff"]
    assert [e.protocol for e in notes] == ["SMTP", "POP3", "IMAP", "POP3"]
    assert [round(float(e.detail["failures"])) for e in notes] == [1, 2, 3, 4]
    assert len({e.session for e in notes}) == 4
    for note in notes:  # each note comes right before the refusal it held back
        session = [e for e in events if e.session == note.session]
        after = session[session.index(note) + 1]
        assert after.direction == "s2c"
        assert after.text.startswith(("535 ", "-ERR ")) or " NO " in after.text


async def test_pre_login_silence_is_cut_in_every_protocol(tmp_path: Path, lab_tls: LabTLS) -> None:
    servers = Servers(tmp_path, lab_tls, login_timeout=0.3, idle_timeout=30.0)
    await servers.start()
    ctx = lab_tls.client_context
    try:

        def logged_in_clients() -> tuple[smtplib.SMTP_SSL, poplib.POP3_SSL, imaplib.IMAP4_SSL]:
            smtp = smtplib.SMTP_SSL("127.0.0.1", servers.ports["smtp"], context=ctx, timeout=10)
            smtp.login("alice@a.example", "alice-pass")
            pop = poplib.POP3_SSL("127.0.0.1", servers.ports["pop3"], context=ctx, timeout=10)
            pop.user("bob@b.example")
            pop.pass_("bob-pass")
            imap = imaplib.IMAP4_SSL("127.0.0.1", servers.ports["imap"], ssl_context=ctx)
            imap.login("bob@b.example", "bob-pass")
            return smtp, pop, imap

        members = await asyncio.to_thread(logged_in_clients)

        async def silent(name: str) -> bytes:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", servers.ports[name], ssl=ctx, server_hostname="localhost"
            )
            data = await asyncio.wait_for(reader.read(), 10)  # until the server closes
            writer.close()
            return data

        said = dict(
            zip(
                ("smtp", "pop3", "imap"),
                await asyncio.gather(silent("smtp"), silent("pop3"), silent("imap")),
                strict=True,
            )
        )
        assert b"421 4.4.2" in said["smtp"] and b"timeout" in said["smtp"]
        assert said["pop3"].endswith(b"-ERR idle timeout\r\n")
        assert b"* BYE Autologout" in said["imap"]

        # The logged-in clients, silent for longer than that, are still served.
        def still_served() -> tuple[int, int, str]:
            smtp, pop, imap = members
            code = smtp.noop()[0]
            count = pop.stat()[0]
            typ, _ = imap.noop()
            smtp.quit()
            pop.quit()
            imap.logout()
            return code, count, typ

        assert await asyncio.to_thread(still_served) == (250, 1, "OK")
        await servers.settle()
    finally:
        for server in servers.servers:
            await close_server(server)


def test_backoff_note_has_an_explanation() -> None:
    from app.explanations import Catalog

    catalog = Catalog.load()
    for key in (
        "login.backoff",
        "pop3.login.needs_tls",
        "pop3.login.in_use",
        "pop3.capa.again",
        "pop3.capa.again.ok",
    ):
        entry = catalog.entries[key]
        assert entry.rfc.startswith("RFC ") and "§" in entry.rfc
        assert entry.text["ja"] and entry.text["en"]


async def test_the_lab_live_view_gets_the_back_off_event(tmp_path: Path, lab_tls: LabTLS) -> None:
    from app.lab.hub import Hub
    from app.lab.live import LiveSink
    from app.lab.world import SERVICES, LabWorld

    hub = Hub()
    lab = LabWorld(
        tmp_path / "lab", lab_tls, Accounts(), LiveSink(hub), ports={s.name: 0 for s in SERVICES}
    )
    await lab.start()
    try:
        queue = hub.subscribe()

        def wrong() -> None:
            pop = poplib.POP3_SSL(
                "127.0.0.1", lab.ports["pop3s"], context=lab_tls.client_context, timeout=10
            )
            pop.user("bob@b.example")
            with pytest.raises(poplib.error_proto):
                pop.pass_("wrong")
            pop.quit()

        await asyncio.to_thread(wrong)
        events = []
        while not queue.empty():
            events.append(queue.get_nowait().event)  # the hub queues Frames
        note = next(e for e in events if e.key == "login.backoff")
        assert note.protocol == "POP3" and note.detail["address"] == "127.0.0.1"
        assert note.text == (
            "login back-off: 1.0 recent failed logins from 127.0.0.1, answer held 0.25 s"
        )
    finally:
        await lab.close()

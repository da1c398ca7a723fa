"""The POP3 listener over real TCP on 127.0.0.1: poplib, curl and raw sockets."""

from __future__ import annotations

import asyncio
import base64
import poplib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from loop_watch import stop_watching, watch_loop
from waiting import HANG_GUARD

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.login_guard import LoginGuard
from app.engines.pop3_server import start_pop3_server
from app.engines.tls import LabTLS
from app.events import PANEL_FETCH, Event, Recorder
from app.world.accounts import Accounts
from app.world.mailstore import MailStore

BOB, BOB_PASS = "bob@b.example", "bob-pass"
MAIL = b"From: alice@a.example\nTo: bob@b.example\nSubject: hi\n\nHello Bob\n.dot line\n"


@pytest.fixture(scope="module")
def lab_tls(tmp_path_factory: pytest.TempPathFactory) -> LabTLS:
    return LabTLS.load(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def ctx(tmp_path: Path, lab_tls: LabTLS, recorder: Recorder) -> EngineContext:
    store = MailStore(tmp_path / "mail")
    for n in (1, 2):
        store.deliver(BOB, MAIL.replace(b"hi", b"hi %d" % n))
    # The back-off rule as in production, with milliseconds instead of seconds.
    guard = LoginGuard(base=0.001, cap=0.05)
    return EngineContext(
        store=store, accounts=Accounts(), tls=lab_tls, sink=recorder.emit, guard=guard
    )


def make_endpoint(**kwargs: object) -> Endpoint:
    return Endpoint(
        panel=PANEL_FETCH,
        protocol="POP3",
        port=995 if kwargs.get("implicit_tls") else 110,
        server_actor="pop3-b",
        client_actor="mua-bob",
        **kwargs,  # type: ignore[arg-type]
    )


Serve = Callable[..., Awaitable[tuple[int, Endpoint]]]


@pytest.fixture
async def serve(ctx: EngineContext) -> AsyncIterator[Serve]:
    """Start a listener with the given Endpoint options; returns (port, endpoint)."""
    servers: list[asyncio.Server] = []

    async def start(cleartext_login: bool = False, **kwargs: object) -> tuple[int, Endpoint]:
        endpoint = make_endpoint(**kwargs)
        server = await start_pop3_server(ctx, endpoint, cleartext_login=cleartext_login)
        servers.append(server)
        return server.sockets[0].getsockname()[1], endpoint

    yield start
    for server in servers:
        await close_server(server)


def maildir_files(ctx: EngineContext) -> list[str]:
    return ctx.store.folder(BOB).listing()


async def settle(endpoint: Endpoint) -> None:
    """Wait until the server has finished with every connection (the endpoint says so)."""
    await asyncio.wait_for(endpoint.wait_until_idle(), HANG_GUARD)  # a hang guard only


def keys(events: list[Event]) -> list[str]:
    return [e.key for e in events]


def check_wire_order(events: list[Event]) -> None:
    """Every client line is followed by its reply; no text carries a trailing newline."""
    for event in events:
        assert not event.text.endswith("\n")
        assert event.panel == PANEL_FETCH and event.session == events[0].session
    wire = [e for e in events if e.direction != "note"]
    for client, server in zip(wire[1::2], wire[2::2], strict=False):
        assert client.direction == "c2s" and server.direction == "s2c"
        assert server.key.startswith(client.key.removesuffix(".response"))


# -- poplib ---------------------------------------------------------------------------


async def test_stls_session_deletes_on_quit(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()
    assert len(maildir_files(ctx)) == 2

    def client() -> tuple[bytes, list[bytes]]:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.stls(context=ctx.tls.client_context)
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        assert pop.stat()[0] == 2
        listing = pop.list()[1]
        _, lines, _ = pop.retr(1)
        assert len(maildir_files(ctx)) == 2  # RETR never deletes
        pop.dele(1)
        pop.dele(2)
        return pop.quit(), [*listing, *lines]

    bye, lines = await asyncio.to_thread(client)
    assert bye.startswith(b"+OK")
    assert b"Hello Bob" in lines and b".dot line" in lines  # dot-stuffing undone
    assert maildir_files(ctx) == []
    await settle(endpoint)

    events = recorder.events
    check_wire_order(events)
    assert keys(events)[:6] == [
        "pop3.greeting",
        "pop3.capa",
        "pop3.capa.ok",
        "pop3.stls",
        "pop3.stls.ok",
        "tls.handshake",
    ]
    handshake = events[5]
    assert handshake.protocol == "TLS" and handshake.text.startswith("TLSv1.")
    assert not any(e.tls for e in events[:5]) and all(e.tls for e in events[5:])
    assert events[0].text.startswith("+OK") and events[0].src == "pop3-b"
    assert events[1].src == "mua-bob" and events[1].text == "CAPA"
    password = next(e for e in events if e.key == "pop3.pass")
    assert password.text == f"PASS {BOB_PASS}" and password.detail == {"masked": "PASS ****"}
    retr = next(e for e in events if e.key == "pop3.retr.ok")
    assert retr.text.split("\n")[-3:] == ["Hello Bob", "..dot line", "."]
    tail = events[-4:]
    assert keys(tail) == ["pop3.quit.ok", "maildir.remove", "maildir.remove", "maildir.state"]
    assert all(e.text.startswith(("removed cur/", "removed new/")) for e in tail[1:3])
    assert tail[1].src == "mailbox:bob@b.example" and tail[1].dst == "pop3-b"
    assert tail[3].text == "INBOX: 0 messages — new/: 0, cur/: 0"


async def test_dele_then_drop_keeps_mail(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()

    def client() -> None:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.stls(context=ctx.tls.client_context)
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        pop.dele(1)
        pop.sock.close()  # no QUIT: the connection just drops

    await asyncio.to_thread(client)
    await settle(endpoint)
    assert len(maildir_files(ctx)) == 2
    assert "maildir.remove" not in keys(recorder.events)


async def test_retr_then_quit_keeps_mail(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()

    def client() -> None:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.stls(context=ctx.tls.client_context)
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        pop.retr(1)
        pop.retr(2)
        pop.quit()

    await asyncio.to_thread(client)
    await settle(endpoint)
    assert len(maildir_files(ctx)) == 2
    # Kept, but seen by a client: out of new/ (as Dovecot moves them to cur/).
    assert recorder.events[-1].text == "INBOX: 2 messages — new/: 0, cur/: 2"
    assert "maildir.remove" not in keys(recorder.events)


async def test_pop3s_implicit_tls(ctx: EngineContext, recorder: Recorder, serve: Serve) -> None:
    port, endpoint = await serve(implicit_tls=True)

    def client() -> int:
        pop = poplib.POP3_SSL("127.0.0.1", port, context=ctx.tls.client_context, timeout=5)
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        count = pop.stat()[0]
        pop.quit()
        return count

    assert await asyncio.to_thread(client) == 2
    await settle(endpoint)
    events = recorder.events
    assert keys(events)[:2] == ["tls.handshake", "pop3.greeting"]
    assert all(e.tls for e in events) and events[0].port == 995
    check_wire_order(events)


async def test_apop_login(ctx: EngineContext, recorder: Recorder, serve: Serve) -> None:
    port, endpoint = await serve()

    def client() -> bytes:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        reply = pop.apop(BOB, BOB_PASS)
        pop.quit()
        return reply

    assert (await asyncio.to_thread(client)).startswith(b"+OK")
    await settle(endpoint)
    apop = next(e for e in recorder.events if e.key == "pop3.apop")
    assert apop.detail == {"masked": f"APOP {BOB} ****"}


# -- raw sockets ----------------------------------------------------------------------


class Raw:
    """A minimal line client for what poplib cannot send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 5)

    async def send(self, data: bytes) -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        return await self.line()

    async def stls(self, ctx: EngineContext) -> None:
        assert await self.send(b"STLS\r\n") == b"+OK begin TLS negotiation\r\n"
        await self.writer.start_tls(ctx.tls.client_context, server_hostname="localhost")

    async def close(self) -> None:
        self.writer.close()


async def test_auth_plain_continuation(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()
    raw = await Raw.connect(port)
    await raw.line()
    await raw.stls(ctx)
    assert await raw.send(b"AUTH PLAIN\r\n") == b"+ \r\n"
    token = base64.b64encode(f"\0{BOB}\0{BOB_PASS}".encode())
    assert (await raw.send(token + b"\r\n")).startswith(b"+OK")
    assert (await raw.send(b"QUIT\r\n")).startswith(b"+OK")
    await raw.close()
    await settle(endpoint)
    events = [e for e in recorder.events if e.tls and e.protocol == "POP3"]
    assert keys(events)[0:4] == [
        "pop3.auth",
        "pop3.auth.continue",
        "pop3.auth.response",
        "pop3.auth.ok",
    ]
    assert events[0].detail == {}
    assert events[1].text == "+ "
    assert events[2].detail == {"decoded": f"␀{BOB}␀{BOB_PASS}", "masked": "AUTH PLAIN ****"}


async def test_three_failed_logins_close(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()
    raw = await Raw.connect(port)
    await raw.line()
    await raw.stls(ctx)
    for _ in range(3):
        await raw.send(f"USER {BOB}\r\n".encode())
        reply = await raw.send(b"PASS nope\r\n")
        assert reply.startswith(b"-ERR")
    assert b"too many" in reply
    assert await raw.line() == b""  # closed by the server
    await settle(endpoint)
    assert keys(recorder.events).count("pop3.pass.err") == 3


async def test_idle_timeout(recorder: Recorder, serve: Serve) -> None:
    port, endpoint = await serve(idle_timeout=0.2)
    raw = await Raw.connect(port)
    await raw.line()
    assert await raw.line() == b"-ERR idle timeout\r\n"
    assert await raw.line() == b""
    await settle(endpoint)
    assert recorder.events[-1].key == "pop3.timeout"


async def test_too_many_connections(recorder: Recorder, serve: Serve) -> None:
    port, endpoint = await serve(max_connections=1)
    first = await Raw.connect(port)
    assert (await first.line()).startswith(b"+OK")
    second = await Raw.connect(port)
    assert await second.line() == b"-ERR too many connections\r\n"
    assert await second.line() == b""
    assert (await first.send(b"NOOP\r\n")).startswith(b"-ERR")  # first one still served
    await first.close()
    await second.close()
    await settle(endpoint)
    assert "pop3.busy" in keys(recorder.events)


async def test_long_lines_and_garbage_keep_serving(recorder: Recorder, serve: Serve) -> None:
    port, endpoint = await serve()
    raw = await Raw.connect(port)
    await raw.line()
    assert await raw.send(b"X" * 20000 + b"\r\n") == b"-ERR line too long\r\n"
    assert (await raw.send(b"\x00\xff\xfe garbage\r\n")).startswith(b"-ERR")
    assert (await raw.send(b"CAPA\r\n")).startswith(b"+OK")
    await raw.close()
    await settle(endpoint)
    toolong = next(e for e in recorder.events if e.key == "pop3.toolong")
    assert toolong.detail["octets"] == "20002"


async def test_stls_ignores_pipelined_plaintext(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            file = sock.makefile("rb")
            file.readline()
            sock.sendall(b"STLS\r\nUSER injected\r\n")  # the second line must be dropped
            assert file.readline().startswith(b"+OK")
            with ctx.tls.client_context.wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(b"NOOP\r\n")
                return tls.makefile("rb").readline()

    assert await asyncio.to_thread(client) == b"-ERR NOOP is only valid after login\r\n"
    await settle(endpoint)
    assert "pop3.user" not in keys(recorder.events)


# -- curl -------------------------------------------------------------------------------


async def curl(url: str, ca_file: Path) -> tuple[int, bytes, bytes]:
    """curl as a POP3 client; --ssl-reqd makes it use STLS on a pop3:// URL."""
    args = ["-sS", "--max-time", "10", "--ssl-reqd", "--cacert", str(ca_file)]
    args += ["-u", f"{BOB}:{BOB_PASS}", "--url", url]
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec("/usr/bin/curl", *args, stdout=pipe, stderr=pipe)
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err


@pytest.mark.parametrize("implicit", [False, True])
async def test_curl_retrieves_over_tls(
    ctx: EngineContext, recorder: Recorder, serve: Serve, implicit: bool
) -> None:
    port, endpoint = await serve(implicit_tls=implicit)
    scheme = "pop3s" if implicit else "pop3"
    code, out, err = await curl(f"{scheme}://127.0.0.1:{port}/1", ctx.tls.ca_file)
    assert code == 0, err
    assert b"Hello Bob" in out and b"\r\n.dot line\r\n" in out
    code, out, err = await curl(f"{scheme}://localhost:{port}/", ctx.tls.ca_file)
    assert code == 0, err
    assert out.splitlines()[0].startswith(b"1 ") and len(out.splitlines()) == 2
    await settle(endpoint)
    assert keys(recorder.events).count("tls.handshake") == 2
    assert "pop3.retr.ok" in keys(recorder.events)
    assert len(maildir_files(ctx)) == 2
    if not implicit:
        assert "pop3.stls.ok" in keys(recorder.events)


def test_tls_context_is_verified(lab_tls: LabTLS) -> None:
    assert lab_tls.client_context.verify_mode is ssl.CERT_REQUIRED


async def test_failed_stls_handshake_just_closes(recorder: Recorder, serve: Serve) -> None:
    port, endpoint = await serve()
    raw = await Raw.connect(port)
    await raw.line()
    assert await raw.send(b"STLS\r\n") == b"+OK begin TLS negotiation\r\n"
    raw.writer.write(b"this is not a ClientHello\r\n" * 10)
    assert await asyncio.wait_for(raw.reader.read(), 5) == b""
    await settle(endpoint)
    assert "tls.handshake" not in keys(recorder.events)


# -- passwords only inside TLS, the maildrop lock, the login back-off --------------------


async def test_no_password_before_stls_then_login_after(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve()

    def client() -> tuple[dict, str, dict]:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        before = pop.capa()
        with pytest.raises(poplib.error_proto) as refused:
            pop.user(BOB)
        pop.stls(context=ctx.tls.client_context)
        after = pop.capa()
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        pop.quit()
        return before, str(refused.value), after

    before, refused, after = await asyncio.to_thread(client)
    assert "STLS" in before and "USER" not in before and "SASL" not in before
    assert refused.startswith("b'-ERR [AUTH] ")
    assert "USER" in after and after["SASL"] == ["PLAIN"] and "STLS" not in after
    await settle(endpoint)
    k = keys(recorder.events)
    assert "pop3.login.needs_tls" in k
    assert k[k.index("tls.handshake") + 1 : k.index("tls.handshake") + 3] == [
        "pop3.capa.again",
        "pop3.capa.again.ok",
    ]


async def test_apop_and_a_cleartext_server_still_work_before_tls(
    ctx: EngineContext, serve: Serve
) -> None:
    strict, _ = await serve()
    relaxed, _ = await serve(cleartext_login=True)

    def client() -> tuple[bytes, bytes]:
        apop = poplib.POP3("127.0.0.1", strict, timeout=5)
        ok = apop.apop(BOB, BOB_PASS)  # a digest, never the password
        apop.quit()
        plain = poplib.POP3("127.0.0.1", relaxed, timeout=5)
        plain.user(BOB)
        passed = plain.pass_(BOB_PASS)
        plain.quit()
        return ok, passed

    ok, passed = await asyncio.to_thread(client)
    assert ok.startswith(b"+OK") and passed.startswith(b"+OK")


async def test_second_session_gets_in_use_until_the_first_ends(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve(implicit_tls=True)

    def login() -> poplib.POP3_SSL:
        pop = poplib.POP3_SSL("127.0.0.1", port, context=ctx.tls.client_context, timeout=5)
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        return pop

    def refused() -> str:
        pop = poplib.POP3_SSL("127.0.0.1", port, context=ctx.tls.client_context, timeout=5)
        pop.user(BOB)
        with pytest.raises(poplib.error_proto) as busy:
            pop.pass_(BOB_PASS)
        pop.quit()
        return str(busy.value)

    first = await asyncio.to_thread(login)
    assert (await asyncio.to_thread(refused)).startswith("b'-ERR [IN-USE] ")
    await asyncio.to_thread(first.quit)  # QUIT unlocks before its +OK is sent
    second = await asyncio.to_thread(login)
    assert (await asyncio.to_thread(second.stat))[0] == 2
    second.file.close()  # dropped without QUIT: the lock must go too
    second.sock.close()
    await settle(endpoint)
    third = await asyncio.to_thread(login)
    await asyncio.to_thread(third.quit)
    await settle(endpoint)
    assert keys(recorder.events).count("pop3.login.in_use") == 1


async def test_back_off_grows_across_new_connections(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve(implicit_tls=True)

    def wrong_once() -> None:
        pop = poplib.POP3_SSL("127.0.0.1", port, context=ctx.tls.client_context, timeout=5)
        pop.user(BOB)
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
        pop.quit()

    for _ in range(4):  # four fresh connections, one wrong password each
        await asyncio.to_thread(wrong_once)
    await settle(endpoint)
    notes = [e for e in recorder.events if e.key == "login.backoff"]
    assert len({e.session for e in notes}) == 4  # one per connection
    assert [round(float(e.detail["failures"])) for e in notes] == [1, 2, 3, 4]
    delays = [float(e.detail["delay"]) for e in notes]
    assert delays == sorted(delays) and delays[-1] > delays[0]
    for note in notes:  # the note sits between the PASS and the -ERR it held back
        session = [e for e in recorder.events if e.session == note.session]
        i = session.index(note)
        assert (session[i - 1].key, session[i + 1].key) == ("pop3.pass", "pop3.pass.err")


async def test_silence_before_login_is_cut_but_logged_in_clients_stay(
    ctx: EngineContext, recorder: Recorder, serve: Serve
) -> None:
    port, endpoint = await serve(implicit_tls=True, login_timeout=0.3, idle_timeout=30.0)
    tls = ctx.tls.client_context
    inside = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="localhost")
    member = Raw(*inside)
    await member.line()
    await member.send(f"USER {BOB}\r\n".encode())
    assert (await member.send(f"PASS {BOB_PASS}\r\n".encode())).startswith(b"+OK")
    # A second client connects and says nothing: the server hangs up on it.
    silent = Raw(
        *await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="localhost")
    )
    await silent.line()
    assert await silent.line() == b"-ERR idle timeout\r\n"
    assert await silent.line() == b""
    # The logged-in client has been silent even longer and is still served.
    assert (await member.send(b"STAT\r\n")).startswith(b"+OK 2 ")
    assert (await member.send(b"QUIT\r\n")).startswith(b"+OK")
    await member.close()
    await silent.close()
    await settle(endpoint)


# -- the scenarios ----------------------------------------------------------------------


async def test_scenario_client_asks_capa_again_after_stls(tmp_path: Path) -> None:
    from app.scenarios.model import load_all
    from app.scenarios.runner import run_scenario

    tls = LabTLS.load(tmp_path / "tls")
    rec = await run_scenario(load_all()["basic-pop3"], tls, tmp_path / "runs", "en")
    pop3 = [e for e in rec.events if e.port == 110]
    k = keys(pop3)
    start = k.index("pop3.stls")
    assert k[start : start + 6] == [
        "pop3.stls",
        "pop3.stls.ok",
        "tls.handshake",
        "pop3.capa.again",
        "pop3.capa.again.ok",
        "pop3.user",
    ]
    before, after = pop3[k.index("pop3.capa.ok")], pop3[k.index("pop3.capa.again.ok")]
    assert "\nUSER\n" not in before.text and "\nSTLS\n" in before.text
    assert "\nUSER\n" in after.text and "\nSASL PLAIN\n" in after.text


async def test_only_a_scenario_that_asks_for_it_takes_a_password_in_clear(tmp_path: Path) -> None:
    from app.scenarios.model import load_all
    from app.scenarios.runner import run_scenario
    from app.world.world import WorldOptions

    scenarios = load_all()
    shown = [s.slug for s in scenarios.values() if s.world.get("cleartext_login")]
    # tls-ports logs in with APOP on 110, which sends no password: it needs no exception.
    assert "pop-before-smtp" in shown and "tls-ports" not in shown and "basic-pop3" not in shown
    assert WorldOptions.from_table({"cleartext_login": True}).cleartext_login
    tls = LabTLS.load(tmp_path / "tls")
    rec = await run_scenario(scenarios["pop-before-smtp"], tls, tmp_path / "runs", "en")
    login = next(e for e in rec.events if e.key == "pop3.pass.ok")
    assert not login.tls  # the old practice the scenario shows, on a server set up for it


async def test_a_whole_session_touches_no_disk_on_the_event_loop(
    ctx: EngineContext, serve: Serve
) -> None:
    """The maildrop's lock path, listing, new/ → cur/ moves, RETR and the QUIT's deletes all
    run in worker threads: a listing on the loop would also wait there for the lock an IMAP
    storage thread holds on the same folder. (A first session warms up lazy imports.)"""
    port, endpoint = await serve(cleartext_login=True)

    def session(delete: bool) -> bytes:
        pop = poplib.POP3("127.0.0.1", port, timeout=5)
        pop.user(BOB)
        pop.pass_(BOB_PASS)
        pop.stat()
        pop.list()
        pop.retr(1)
        if delete:
            pop.dele(1)
        return pop.quit()

    assert (await asyncio.to_thread(session, False)).startswith(b"+OK")
    await settle(endpoint)
    ctx.store.deliver(BOB, MAIL)  # a new one in new/: the next login moves it to cur/
    watch_loop()
    try:
        bye = await asyncio.to_thread(session, True)
        await settle(endpoint)
    finally:
        on_loop = stop_watching()
    assert bye.startswith(b"+OK")
    assert on_loop == []
    assert len(maildir_files(ctx)) == 2

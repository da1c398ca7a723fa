"""The IMAP listener over real TCP on 127.0.0.1, driven by imaplib and curl."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loop_watch import stop_watching, watch_loop

from app.engines import imap_server
from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.imap_server import notify_mailbox_changed, start_imap_server
from app.engines.tls import LabTLS
from app.events import Event, Recorder
from app.world.accounts import Accounts
from app.world.mailstore import MailStore

BOB = "bob@b.example"
MESSAGE = (
    b"From: Alice <alice@a.example>\r\nTo: Bob <bob@b.example>\r\nSubject: Lunch?\r\n"
    b"Message-ID: <lunch@a.example>\r\n\r\nNoon at the usual place?\r\n"
)

_TLS_CACHE: dict[str, LabTLS] = {}


@dataclass
class Lab:
    root: Path
    ctx: EngineContext
    recorder: Recorder

    @property
    def store(self) -> MailStore:
        return self.ctx.store

    def inbox_files(self) -> list[str]:
        return self.store.folder(BOB).listing()

    def events(self, session: str | None = None) -> list[Event]:
        return [e for e in self.recorder.events if session is None or e.session == session]

    async def serve(
        self, cleartext_login: bool = False, **endpoint_args: object
    ) -> tuple[asyncio.Server, int, Endpoint]:
        args: dict[str, object] = dict(
            panel=4,
            protocol="IMAP",
            port=143,
            server_actor="imap-b",
            client_actor="mua-bob",
            hostname="mx.b.example",
        )
        endpoint = Endpoint(**{**args, **endpoint_args})  # type: ignore[arg-type]
        server = await start_imap_server(self.ctx, endpoint, cleartext_login=cleartext_login)
        return server, server.sockets[0].getsockname()[1], endpoint


@pytest.fixture
def lab(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    # Certificates take a moment to make: one set for the whole test run.
    if "tls" not in _TLS_CACHE:
        _TLS_CACHE["tls"] = LabTLS.load(tmp_path_factory.mktemp("tls"))
    recorder = Recorder()
    store = MailStore(tmp_path / "mail")
    store.ensure_account(BOB)
    ctx = EngineContext(store, Accounts(), _TLS_CACHE["tls"], recorder.emit)
    return Lab(tmp_path, ctx, recorder)


@pytest.fixture
async def plain(lab: Lab) -> AsyncIterator[int]:
    server, port, _ = await lab.serve()
    yield port
    await close_server(server)


def run(fn: Callable[[], object]) -> asyncio.Future[object]:
    """imaplib blocks: run it in a thread so the server keeps serving."""
    return asyncio.ensure_future(asyncio.to_thread(fn))


def imap(lab: Lab, port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.starttls(ssl_context=lab.ctx.tls.client_context)
    client.login(BOB, "bob-pass")
    return client


class Raw:
    """A hand-driven client for what imaplib cannot do (IDLE, garbage)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> Raw:
        """Connect; with `tls`, STARTTLS first (the server takes no password before it)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        assert (await raw.line()).startswith(b"* OK")
        if tls is not None:
            assert (await raw.cmd(b"s STARTTLS"))[-1].startswith(b"s OK")
            await writer.start_tls(tls)
        return raw

    async def line(self, timeout: float = 5) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def cmd(self, text: bytes) -> list[bytes]:
        tag = text.split(b" ", 1)[0]
        self.writer.write(text + b"\r\n")
        lines = []
        while True:
            line = await self.line()
            assert line, "connection closed"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    async def close(self) -> None:
        self.writer.close()
        await asyncio.gather(self.writer.wait_closed(), return_exceptions=True)


# -- the acceptance path -------------------------------------------------------------------
async def test_starttls_login_fetch_store_logout_leaves_seen_on_disk(lab: Lab, plain: int) -> None:
    lab.store.deliver(BOB, MESSAGE)
    assert lab.inbox_files()[0].startswith("new/")

    def session() -> None:
        client = imap(lab, plain)
        assert client.select("INBOX") == ("OK", [b"1"])
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        assert data[0][1] == MESSAGE  # type: ignore[index]
        typ, data = client.fetch("1", "(RFC822)")
        assert typ == "OK" and data[0][1] == MESSAGE  # type: ignore[index]
        typ, data = client.store("1", "+FLAGS", "(\\Seen)")
        assert typ == "OK" and b"\\Seen" in data[0]  # type: ignore[operator]
        assert client.logout()[0] == "BYE"

    await run(session)
    (name,) = lab.inbox_files()
    assert name.startswith("cur/") and name.endswith(":2,S")
    assert (lab.store.account_path(BOB) / name).read_bytes() == MESSAGE

    events = lab.events()
    keys = [e.key for e in events]
    assert keys[:3] == ["imap.greeting", "imap.capability", "imap.capability.ok"]
    tls_at = keys.index("tls.handshake")
    assert keys[tls_at - 2 : tls_at] == ["imap.starttls", "imap.starttls.ok"]
    assert events[tls_at].protocol == "TLS" and events[tls_at].text.startswith("TLSv1.")
    assert not any(e.tls for e in events[:tls_at]) and all(e.tls for e in events[tls_at + 1 :])
    login = next(e for e in events if e.key == "imap.login")
    assert login.detail == {"masked": f"{login.text.split()[0]} LOGIN {BOB} ****"}
    assert login.direction == "c2s" and login.src == "mua-bob" and login.dst == "imap-b"
    flags_note = next(e for e in events if e.key == "maildir.flags")
    assert (
        flags_note.text == name
        and flags_note.src == f"mailbox:{BOB}"
        and flags_note.dst == "imap-b"
    )
    assert keys.index("imap.fetch.ok") < keys.index("maildir.flags")
    state = events[-1]
    assert state.key == "maildir.state" and state.text == f"INBOX: 1 message — {name}"
    for e in events:  # client command strictly before its response
        if e.direction == "s2c" and e.key not in ("imap.greeting", "imap.continue"):
            assert events[events.index(e) - 1].direction == "c2s"
    fetch = [e for e in events if e.key == "imap.fetch.ok"][1]
    assert fetch.text.startswith("* 1 FETCH (RFC822 {") and "Noon at the usual place?" in fetch.text


async def test_second_connection_sees_seen_flag_and_uids_persist(lab: Lab, plain: int) -> None:
    lab.store.deliver(BOB, MESSAGE)
    lab.store.deliver(BOB, MESSAGE.replace(b"Lunch", b"Dinner"))

    def first() -> None:
        client = imap(lab, plain)
        client.select("INBOX")
        client.fetch("2", "(BODY[TEXT])")
        client.logout()

    def second() -> bytes:
        client = imap(lab, plain)
        client.select("INBOX")
        _typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
        client.logout()
        return b" ".join(data)  # type: ignore[arg-type]

    await run(first)
    flags = await run(second)
    assert flags == b"1 (UID 1 FLAGS ()) 2 (UID 2 FLAGS (\\Seen))"


async def test_uids_survive_a_server_restart(lab: Lab) -> None:
    for i in range(3):
        lab.store.deliver(BOB, MESSAGE + b"%d\r\n" % i)

    def uids(port: int) -> tuple[bytes, bytes]:
        client = imap(lab, port)
        client.select("INBOX")
        validity = client.response("UIDVALIDITY")[1][0]
        _typ, data = client.uid("SEARCH", "ALL")
        client.store("2", "+FLAGS", "(\\Deleted)")
        client.expunge()
        client.logout()
        return validity, data[0]  # type: ignore[return-value]

    server, port, _ = await lab.serve()
    first = await run(lambda: uids(port))
    await close_server(server)
    lab.ctx.store = MailStore(lab.root / "mail")  # as after a restart: nothing in memory
    server, port, _ = await lab.serve()
    second = await run(lambda: uids(port))
    await close_server(server)
    assert first[1] == b"1 2 3" and second == (first[0], b"1 3")


async def test_no_login_before_starttls_on_143(lab: Lab, plain: int) -> None:
    lab.store.deliver(BOB, MESSAGE)

    def session() -> list[str]:
        client = imaplib.IMAP4("127.0.0.1", plain, timeout=10)
        caps = list(client.capabilities)
        with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED"):
            client.login(BOB, "bob-pass")
        with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED"):
            client.authenticate("PLAIN", lambda _: b"\x00bob@b.example\x00bob-pass")
        client.starttls(ssl_context=lab.ctx.tls.client_context)
        assert "AUTH=PLAIN" in client.capabilities and "LOGINDISABLED" not in client.capabilities
        assert client.login(BOB, "bob-pass")[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"1"])
        client.logout()
        return caps

    caps = await run(session)
    assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps and "STARTTLS" in caps
    keys = [e.key for e in lab.events()]
    assert keys.count("imap.login.privacyrequired") == 1
    assert keys.count("imap.authenticate.privacyrequired") == 1
    assert "imap.login.ok" in keys and "imap.login.no" not in keys


async def test_a_server_configured_for_it_takes_a_cleartext_login(lab: Lab) -> None:
    server, port, _ = await lab.serve(cleartext_login=True)

    def session() -> tuple[str, ...]:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        caps = client.capabilities
        assert client.login(BOB, "bob-pass")[0] == "OK"
        client.logout()
        return caps

    caps = await run(session)
    await close_server(server)
    assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps
    assert not next(e for e in lab.events() if e.key == "imap.login").tls


async def test_recent_belongs_to_the_first_session_that_selects(lab: Lab, plain: int) -> None:
    for i in range(3):
        lab.store.deliver(BOB, MESSAGE + b"%d\r\n" % i)

    def session(examine: bool = False) -> tuple[bytes, bytes, bytes]:
        client = imap(lab, plain)
        _typ, status = client.status("INBOX", "(RECENT)")
        client.select("INBOX", readonly=examine)
        recent = client.response("RECENT")[1][0]
        _typ, flags = client.fetch("1", "(FLAGS)")
        client.logout()
        return status[0], recent, flags[0]  # type: ignore[return-value]

    # EXAMINE looks without taking: still \Recent for whoever selects next.
    assert await run(lambda: session(examine=True)) == (
        b"INBOX (RECENT 3)",
        b"3",
        b"1 (FLAGS (\\Recent))",
    )
    assert all(name.startswith("new/") for name in lab.inbox_files())
    first = await run(session)
    assert first == (b"INBOX (RECENT 3)", b"3", b"1 (FLAGS (\\Recent))")
    assert all(name.startswith("cur/") for name in lab.inbox_files())  # as Dovecot moves them
    second = await run(session)
    assert second == (b"INBOX (RECENT 0)", b"0", b"1 (FLAGS ())")
    notes = [e for e in lab.events() if e.key == "maildir.recent"]
    assert len(notes) == 1 and notes[0].text.startswith("new/ → cur/ (3): cur/")


async def test_keywords_are_kept_listed_fetched_and_searched(lab: Lab, plain: int) -> None:
    lab.store.deliver(BOB, MESSAGE)
    lab.store.deliver(BOB, MESSAGE)

    def first() -> tuple[bytes, bytes, bytes, bytes]:
        client = imap(lab, plain)
        client.select("INBOX")
        permanent = client.response("PERMANENTFLAGS")[1][0]
        _typ, stored = client.store("1", "+FLAGS", "($Label1 $Junk \\Flagged)")
        flags_update = client.response("FLAGS")[1][-1]  # the new keywords, announced
        _typ, appended = client.append("INBOX", "(NonJunk \\Seen)", None, MESSAGE)
        client.logout()
        return permanent, stored[0], flags_update, appended[0]  # type: ignore[return-value]

    def second() -> tuple[bytes, bytes, list[bytes]]:
        client = imap(lab, plain)
        client.select("INBOX")
        flags = client.response("FLAGS")[1][0]
        _typ, fetched = client.fetch("1:*", "(FLAGS)")
        searches = [
            client.search(None, *q)[1][0]
            for q in (("KEYWORD", "$junk"), ("UNKEYWORD", "$Junk"), ("KEYWORD", "NonJunk"))
        ]
        client.store("1", "-FLAGS", "($Junk)")
        searches.append(client.search(None, "KEYWORD", "$Junk")[1][0])
        client.logout()
        return flags, b" ".join(fetched), searches  # type: ignore[arg-type]

    permanent, stored, flags_update, appended = await run(first)
    assert permanent.endswith(b"\\*)") and b"APPENDUID" in appended
    assert stored == b"1 (FLAGS (\\Flagged \\Recent $Junk $Label1))"
    assert b"$Junk $Label1" in flags_update
    # A new session (as after a restart: nothing in memory) gets them back from disk.
    lab.ctx.store = MailStore(lab.root / "mail")
    flags, fetched, searches = await run(second)
    assert flags.endswith(b"\\Draft $Junk $Label1 NonJunk)")
    assert fetched == (
        b"1 (FLAGS (\\Flagged $Junk $Label1)) 2 (FLAGS ()) 3 (FLAGS (\\Seen NonJunk))"
    )
    assert searches == [b"1", b"2 3", b"3", b""]
    # File names hold the system flags only; the keywords are in the folder's index.
    assert sorted(n.rsplit(",", 1)[1] for n in lab.inbox_files()) == ["", "F", "S"]
    (note,) = [e for e in lab.events() if e.key == "maildir.keywords"]  # -FLAGS ($Junk)
    assert note.text.endswith(":2,F — keywords: $Label1")


async def test_uidvalidity_is_new_for_every_creation_even_after_a_restart(
    lab: Lab, plain: int
) -> None:
    def recreate(times: int) -> list[int]:
        client = imap(lab, plain)
        seen = []
        for _ in range(times):  # far quicker than a second apart
            client.create("Work")
            client.select("Work")
            seen.append(int(client.response("UIDVALIDITY")[1][0]))  # type: ignore[arg-type]
            client.unselect()
            client.delete("Work")
        client.logout()
        return seen

    first = await run(lambda: recreate(4))
    lab.ctx.store = MailStore(lab.root / "mail")  # as after a restart: nothing in memory
    later = await run(lambda: recreate(2))
    values = first + later
    assert values == sorted(set(values)) and len(values) == 6  # strictly increasing


async def test_long_id_line_and_mailbox_names_with_quote_and_backslash(
    lab: Lab, plain: int
) -> None:
    def session() -> tuple[str, list[bytes], tuple[str, list[bytes]]]:
        client = imap(lab, plain)
        # A client's ID list over 8,192 octets (Dovecot takes lines up to 64 KiB).
        fields = " ".join(f'"x-field-{i}" "{"v" * 90}"' for i in range(90))
        typ, _data = client.xatom("ID", f"({fields})")
        for name in ('say "hi"', "back\\slash"):
            assert client.create(client._quote(name))[0] == "OK"  # type: ignore[attr-defined]
        _typ, listing = client.list()
        selected = client.select(client._quote('say "hi"'))  # type: ignore[attr-defined]
        client.logout()
        return typ, listing, selected  # type: ignore[return-value]

    typ, listing, selected = await run(session)
    assert typ == "OK"
    assert b'(\\HasNoChildren) "." "say \\"hi\\""' in listing
    assert b'(\\HasNoChildren) "." "back\\\\slash"' in listing
    assert selected == ("OK", [b"0"])
    names = lab.store.folder_names(BOB)
    assert 'say "hi"' in names and "back\\slash" in names


# -- IDLE and other sessions ----------------------------------------------------------------
async def _idle(lab: Lab, port: int) -> Raw:
    raw = await Raw.connect(port, lab.ctx.tls.client_context)
    await raw.cmd(b"a LOGIN bob@b.example bob-pass")
    await raw.cmd(b"b SELECT INBOX")
    raw.writer.write(b"c IDLE\r\n")
    assert await raw.line() == b"+ idling\r\n"
    return raw


def no_idle_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idling session's once-a-second poll moved out of reach: what it is told within
    `Raw.line`'s bound then came from the notifier, however slow the machine (rather than
    racing a 0.8 s read against the 1 s poll)."""
    monkeypatch.setattr(imap_server, "IDLE_POLL_SECONDS", 3600.0)


async def test_idle_gets_exists_when_mail_is_delivered(
    lab: Lab, plain: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_idle_poll(monkeypatch)
    lab.store.deliver(BOB, MESSAGE)
    raw = await _idle(lab, plain)
    lab.store.deliver(BOB, MESSAGE)
    notify_mailbox_changed(lab.store.folder(BOB).path)
    assert await raw.line() == b"* 2 EXISTS\r\n"  # the notifier: no poll comes
    raw.writer.write(b"DONE\r\n")
    assert await raw.line() == b"c OK IDLE terminated\r\n"
    await raw.close()
    keys = [e.key for e in lab.events()]
    idle = keys.index("imap.idle")
    assert keys[idle : idle + 6] == [
        "imap.idle",
        "imap.continue",
        "imap.push.exists",
        "maildir.recent",  # the idling session is the first to see it: new/ → cur/
        "imap.done",
        "imap.idle.ok",
    ]
    assert all(name.startswith("cur/") for name in lab.inbox_files())


async def test_idle_polls_for_changes_from_elsewhere(lab: Lab, plain: int) -> None:
    lab.store.deliver(BOB, MESSAGE)
    lab.store.deliver(BOB, MESSAGE)
    raw = await _idle(lab, plain)
    folder = lab.store.folder(BOB)
    first, second = folder.messages()
    folder.set_flags(first.key, frozenset({"\\Flagged"}))  # as another process would
    assert await raw.line() == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    folder.remove([second.key])
    assert await raw.line() == b"* 2 EXPUNGE\r\n"
    await raw.close()


async def test_two_clients_see_each_others_changes(
    lab: Lab, plain: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_idle_poll(monkeypatch)
    lab.store.deliver(BOB, MESSAGE)
    idler = await _idle(lab, plain)
    other = await Raw.connect(plain, lab.ctx.tls.client_context)
    await other.cmd(b"a LOGIN bob@b.example bob-pass")
    await other.cmd(b"b SELECT INBOX")
    await other.cmd(b"c STORE 1 +FLAGS (\\Flagged)")
    assert await idler.line() == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    await other.cmd(b"d APPEND INBOX {5+}\r\nhello")
    assert await idler.line() == b"* 2 EXISTS\r\n"
    idler.writer.write(b"DONE\r\n")
    await idler.line()
    await idler.cmd(b"e STORE 2 +FLAGS (\\Deleted)")
    await idler.cmd(b"f EXPUNGE")
    assert b"* 2 EXPUNGE\r\n" in await other.cmd(b"g NOOP")
    await idler.close()
    await other.close()
    pushes = [e.key for e in lab.events() if e.key.startswith("imap.push")]
    assert pushes == ["imap.push.fetch", "imap.push.exists"]


# -- limits and hostile input ----------------------------------------------------------------
async def test_garbage_long_lines_and_literals_get_bad_and_serving_goes_on(
    lab: Lab, plain: int
) -> None:
    raw = await Raw.connect(plain)
    raw.writer.write(b"\x00\xff\xfe garbage\r\n")
    assert (await raw.line()).startswith(b"* BAD ")
    lines = await raw.cmd(b"a NOOP " + b"x" * 70000)
    assert lines == [b"a BAD Command line too long (limit 65536 octets)\r\n"]
    assert await raw.cmd(b"b LOGIN bob@b.example bob-pass") != []
    raw.writer.write(b"c APPEND INBOX {20000000}\r\n")
    assert (await raw.line()).startswith(b"c NO [TOOBIG]")
    assert (await raw.cmd(b"d NOOP"))[-1] == b"d OK NOOP completed\r\n"
    await raw.close()


async def test_three_failed_logins_close_the_connection(lab: Lab, plain: int) -> None:
    raw = await Raw.connect(plain, lab.ctx.tls.client_context)
    for tag in (b"a", b"b"):
        assert (await raw.cmd(tag + b" LOGIN bob@b.example wrong"))[-1].startswith(tag + b" NO")
    assert (await raw.cmd(b"c LOGIN bob@b.example wrong"))[-1].startswith(b"c NO")
    assert (await raw.line()).startswith(b"* BYE")
    assert await raw.line() == b""
    await raw.close()
    assert [e.key for e in lab.events()][-2:] == ["imap.login.no", "imap.bye"]


async def test_idle_timeout_and_connection_limit(lab: Lab) -> None:
    server, port, endpoint = await lab.serve(idle_timeout=0.3, max_connections=1)
    first = await Raw.connect(port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.readline() == b"* BYE Too many connections, try again later\r\n"
    writer.close()
    assert await first.line(timeout=3) == b"* BYE Autologout; idle for too long\r\n"
    assert await first.line() == b""
    await first.close()
    await close_server(server)
    assert [e.key for e in lab.events()].count("imap.bye") == 2
    assert endpoint.active == 0


async def test_imaplib_append_authenticate_and_implicit_tls(lab: Lab) -> None:
    server, port, _ = await lab.serve(implicit_tls=True, port=993)

    def session() -> None:
        client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=lab.ctx.tls.client_context)
        assert "STARTTLS" not in client.capabilities
        client.authenticate("PLAIN", lambda _: b"\x00bob@b.example\x00bob-pass")
        typ, data = client.append("Sent", "(\\Seen)", None, MESSAGE)
        assert typ == "OK" and b"APPENDUID" in data[0]  # type: ignore[operator]
        client.select("Sent")
        typ, data = client.search(None, "SUBJECT", "lunch")
        assert data == [b"1"]
        client.logout()

    await run(session)
    await close_server(server)
    events = lab.events()
    assert events[0].key == "tls.handshake" and all(e.tls for e in events)
    keys = [e.key for e in events]
    assert "imap.auth.response" in keys and "imap.continue" in keys
    sasl = next(e for e in events if e.key == "imap.auth.response")
    assert sasl.detail["decoded"] == "␀bob@b.example␀bob-pass"
    append = next(e for e in events if e.key == "imap.append")
    assert append.text.endswith("Noon at the usual place?\n")
    assert keys[keys.index("imap.append") - 1] == "imap.continue"  # "+ Ready for literal"
    assert lab.store.folder(BOB, "Sent").listing()[0].endswith(":2,S")


# -- curl -------------------------------------------------------------------------------
async def _curl(lab: Lab, url: str, *extra: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("curl") or "/usr/bin/curl",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        str(lab.ctx.tls.ca_file),
        "-u",
        f"{BOB}:bob-pass",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_curl_imap_starttls_and_imaps(lab: Lab, plain: int) -> None:
    lab.store.deliver(BOB, MESSAGE)
    listing = await _curl(lab, f"imap://127.0.0.1:{plain}/", "--ssl-reqd")
    assert re.search(r'\* LIST \(.*\) "\." INBOX', listing) and "Sent" in listing
    body = await _curl(lab, f"imap://127.0.0.1:{plain}/INBOX;UID=1", "--ssl-reqd")
    assert body.replace("\r\n", "\n") == MESSAGE.decode().replace("\r\n", "\n")
    assert "tls.handshake" in [e.key for e in lab.events()]
    server, port, _ = await lab.serve(implicit_tls=True, port=993)
    body = await _curl(lab, f"imaps://127.0.0.1:{port}/INBOX;UID=1")
    await close_server(server)
    assert "Noon at the usual place?" in body
    assert lab.inbox_files()[0].endswith(":2,S")  # curl fetches BODY[], which marks \Seen


# -- the event loop stays free ---------------------------------------------------------------
async def test_body_search_reads_off_the_event_loop(lab: Lab, plain: int) -> None:
    """SEARCH TEXT over a big folder reads every message. One of them is a named pipe,
    so the read blocks until this test writes it: meanwhile another client must be
    served. On a server reading on its event loop nobody is answered until then."""
    for i in range(200):
        lab.store.deliver(BOB, MESSAGE.replace(b"Noon", b"needle" if i % 50 == 7 else b"Noon"))
    fifo = lab.store.folder(BOB).path / "new" / "9999999999.pipe.host"
    os.mkfifo(fifo)
    blocked = threading.Event()

    def searcher() -> bytes:
        client = imap(lab, plain)
        client.select("INBOX")
        _typ, data = client.search(None, "TEXT", "NEEDLE")
        client.logout()
        return data[0]  # type: ignore[return-value]

    def other_client_while_blocked() -> bytes:
        with open(fifo, "wb") as pipe:  # returns once the server opened it for reading
            blocked.set()
            try:
                client = imaplib.IMAP4("127.0.0.1", plain, timeout=5)
                client.starttls(ssl_context=lab.ctx.tls.client_context)
                client.login(BOB, "bob-pass")
                _typ, data = client.select("INBOX")
                client.logout()
            finally:  # the piped message: the search goes on and finds it
                pipe.write(MESSAGE.replace(b"Noon", b"Needle"))
        return data[0]  # type: ignore[return-value]

    search = run(searcher)
    other = run(other_client_while_blocked)
    assert await other == b"201"
    assert blocked.is_set()
    assert await search == b"8 58 108 158 201"


# -- the folder listing every command ends with ----------------------------------------------
def test_a_settled_listing_is_reused_and_any_change_is_still_seen(lab: Lab) -> None:
    """Each IMAP command ends with a listing of the folder; an unchanged one is reused
    (as Dovecot's maildir sync does), but a change by another process must show."""
    for i in range(3):
        lab.store.deliver(BOB, MESSAGE + b"%d\r\n" % i)
    folder = lab.store.folder(BOB)
    first = folder.messages()
    past = time.time() - 10  # as a folder nobody touched for a while
    for name in ("new", "cur", "mailflow-uids.json"):
        os.utime(folder.path / name, (past, past))
    assert folder.messages() == first  # listed and remembered: settled
    assert lab.store.listings.get(folder.path) is not None
    other = MailStore(lab.root / "mail")  # another process, its own memory
    other.folder(BOB).set_flags(first[0].key, frozenset({"\\Seen"}))
    other.folder(BOB).remove([first[1].key])
    other.deliver(BOB, MESSAGE)
    now = lab.store.folder(BOB).messages()
    assert [(m.uid, m.flags) for m in now] == [(1, {"\\Seen"}), (3, set()), (4, set())]


# -- nothing touches the disk on the event loop ------------------------------------------------


def _folder_work(lab: Lab, port: int, prefix: str) -> list[object]:
    """What a mail program does when one manages folders and flags (imaplib, a thread)."""
    c = imap(lab, port)
    answers: list[object] = [
        c.create(f"{prefix}"),
        c.create(f"{prefix}.Kid"),
        c.rename(f"{prefix}", f"{prefix}2"),
        c.subscribe(f"{prefix}2"),
        c.lsub('""', f"{prefix}*"),
        c.unsubscribe(f"{prefix}2"),
        c.list('""', f"{prefix}*"),
        c.status(f"{prefix}2.Kid", "(MESSAGES UIDNEXT UIDVALIDITY)"),
        c.select("INBOX"),
        c.store("1:*", "+FLAGS", "(\\Flagged)"),
        c.fetch("1", "(BODY[])")[0],  # sets \Seen: a rename
        c.delete(f"{prefix}2.Kid"),
        c.delete(f"{prefix}2"),
        c.logout()[0],
    ]
    return answers


async def test_folder_management_listing_and_flags_run_off_the_event_loop(
    lab: Lab, plain: int
) -> None:
    """CREATE, RENAME, SUBSCRIBE, LSUB, LIST, STATUS, SELECT, STORE, FETCH (\\Seen),
    DELETE, LOGOUT and an IDLE push through real TCP, while every file-system call
    made on the event loop's thread is recorded: there must be none. (A first round
    warms up lazy imports, which read files once.)"""
    for _ in range(2):
        lab.store.deliver(BOB, MESSAGE)
    warm = await run(lambda: _folder_work(lab, plain, "Warm"))
    assert warm[-1] == "BYE"
    lab.store.deliver(BOB, MESSAGE)  # a new one: SELECT moves it new/ -> cur/
    watch_loop()
    try:
        answers = await run(lambda: _folder_work(lab, plain, "Proj"))
        idler = await _idle(lab, plain)
        await asyncio.to_thread(lab.store.deliver, BOB, MESSAGE)  # the MDA, elsewhere
        notify_mailbox_changed(lab.store.folder(BOB).path)
        assert await idler.line() == b"* 4 EXISTS\r\n"
        idler.writer.write(b"DONE\r\n")
        assert await idler.line() == b"c OK IDLE terminated\r\n"
        await idler.close()
    finally:
        on_loop = stop_watching()
    assert on_loop == []
    oks = [a for a in answers[:-3] if isinstance(a, tuple)]
    assert all(typ == "OK" for typ, _ in oks), answers
    lsub, listed = answers[4], answers[6]
    assert lsub == ("OK", [b'() "." Proj2'])  # type: ignore[comparison-overlap]
    assert listed == (  # type: ignore[comparison-overlap]
        "OK",
        [b'(\\HasChildren) "." Proj2', b'(\\HasNoChildren) "." Proj2.Kid'],
    )
    status = answers[7]
    assert re.fullmatch(
        rb"Proj2\.Kid \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+\)",
        status[1][0],  # type: ignore[index]
    )
    assert "Proj2" not in lab.store.folder_names(BOB)
    files = lab.inbox_files()
    assert len(files) == 4 and all(f.startswith("cur/") for f in files)
    assert sum(f.endswith(":2,FS") for f in files) == 1  # FETCH BODY[] of message 1
    assert sum(f.endswith(":2,F") for f in files) == 2
    subscriptions = (lab.store.account_path(BOB) / "subscriptions").read_text()
    assert "Proj2" not in subscriptions.split()
    # DELETE renamed the folder out of sight first (into tmp/), then removed it all.
    assert list((lab.store.account_path(BOB) / "tmp").iterdir()) == []


async def test_a_rename_that_fails_half_way_is_undone_and_answered_no(
    lab: Lab, plain: int
) -> None:
    """RENAME a b moves .a and then .a.c (Maildir++ keeps children beside); when .b.c
    is already there the second move fails. Nothing may be left half moved."""

    def client() -> list[object]:
        c = imap(lab, plain)
        for name in ("a", "a.c", "b.c"):
            assert c.create(name)[0] == "OK"
        assert c.append("a.c", "", None, MESSAGE)[0] == "OK"
        assert c.append("b.c", "", None, MESSAGE)[0] == "OK"
        refused = c.rename("a", "b")
        answers = [refused, c.list('""', "*")[1], c.status("a.c", "(MESSAGES)")[1]]
        answers.append(c.noop()[0])  # the session goes on
        c.logout()
        return answers

    refused, listed, status, noop = await run(client)  # type: ignore[misc]
    assert refused == ("NO", [b"[CANNOT] RENAME failed, nothing was moved: Directory not empty"])
    names = [line.rsplit(b" ", 1)[1] for line in listed]
    assert names == [b"INBOX", b"Sent", b"Trash", b"a", b"a.c", b"b", b"b.c"]
    assert b'(\\Noselect \\HasChildren) "." b' in listed  # only the parent of b.c
    assert status == [b"a.c (MESSAGES 1)"] and noop == "OK"
    assert lab.store.folder_names(BOB) == ["INBOX", "Sent", "Trash", "a", "a.c", "b.c"]
    assert len(lab.store.folder(BOB, "a.c").listing()) == 1


async def test_two_sessions_creating_one_name_get_one_ok_and_one_alreadyexists(
    lab: Lab, plain: int
) -> None:
    """Each CREATE is one storage call whose own check decides, so two sessions that
    ask at the same moment (each may look before the other creates) cannot both be told
    OK, and neither gets a server error; the folder is whole, as Maildir++ has it."""
    first, second = await asyncio.gather(
        asyncio.to_thread(imap, lab, plain), asyncio.to_thread(imap, lab, plain)
    )
    try:
        answers = sorted(
            await asyncio.gather(
                asyncio.to_thread(first.create, "Projects"),
                asyncio.to_thread(second.create, "Projects"),
            )
        )
        assert answers == [
            ("NO", [b"[ALREADYEXISTS] Mailbox already exists"]),
            ("OK", [b"CREATE completed"]),
        ]
        # The store's own check, for callers that do not look first.
        with pytest.raises(FileExistsError):
            lab.store.create_folder(BOB, "Projects")
    finally:
        await asyncio.gather(asyncio.to_thread(first.logout), asyncio.to_thread(second.logout))
    account = lab.store.account_path(BOB)
    assert sorted(p.name for p in (account / ".Projects").iterdir()) == [
        "cur", "maildirfolder", "new", "tmp"
    ]
    assert not list((account / "tmp").glob("mailflow-new.*"))  # no half-built folder left


class CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts the jobs handed to it: each is a trip off the loop."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self.trips = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.trips += 1
        return super().submit(fn, *args, **kwargs)


async def test_an_indexed_header_fetch_lists_the_folder_in_its_one_trip_off_the_loop(
    lab: Lab, plain: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last ReadSummaries of a FETCH the index answers carries the folder listing the
    reply ends with: both happen in one storage-thread trip, not a second one after."""
    for n in range(3):
        lab.store.deliver(BOB, MESSAGE.replace(b"Lunch?", b"Lunch %d?" % n))
    storage, others = CountingPool(1), CountingPool(2)
    raw = await Raw.connect(plain, lab.ctx.tls.client_context)
    try:
        await raw.cmd(b"a LOGIN bob@b.example bob-pass")
        assert (await raw.cmd(b"b SELECT INBOX"))[-1].startswith(b"b OK")
        monkeypatch.setattr(imap_server, "STORAGE", storage)
        asyncio.get_running_loop().set_default_executor(others)  # asyncio.to_thread's
        reply = await raw.cmd(b"c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert reply[-1].startswith(b"c OK")
        assert b"".join(reply).count(b"Subject: Lunch") == 3
        assert (storage.trips, others.trips) == (1, 0)
    finally:
        await raw.close()
        storage.shutdown()

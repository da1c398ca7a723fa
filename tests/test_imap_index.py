"""The folder index: header FETCH, STATUS and header SEARCH over real TCP (imaplib) open
no message file; the index survives a restart; a crash between a message's write and
its index record, or a torn index line, is repaired from the Maildir."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.imap_server import start_imap_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.protocols.imap.mime import ParsedMessage, header_fields
from app.world import folder_index
from app.world.accounts import Accounts
from app.world.folder_index import INDEXES, JOURNAL, SNAPSHOT
from app.world.mailstore import MailStore

BOB = "bob@b.example"
HEADERS = "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]"


def mail(i: int) -> bytes:
    return (
        f"Received: from mx.a.example by mx.b.example; Mon, 2 Nov 2026 10:{i % 60:02d}:00 +0000\n"
        f"From: Alice {i} <alice{i}@a.example>\n"
        f"To: Bob <bob@b.example>\n"
        f"Subject: note {i}\n  folded on\n"
        f"Date: Mon, 2 Nov 2026 10:{i % 60:02d}:00 +0000\n"
        f"Message-ID: <{i}@a.example>\n\n"
        f"body of note {i}\n"
    ).encode()


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    INDEXES.forget()  # nothing in memory from another test
    return MailStore(tmp_path / "mail")


@pytest.fixture
async def port(store: MailStore, tmp_path: Path) -> AsyncIterator[int]:
    ctx = EngineContext(store, Accounts(), LabTLS(tmp_path / "no-tls"), Recorder().emit)
    endpoint = Endpoint(4, "IMAP", 143, "imap-b", "mua-bob", hostname="mx.b.example")
    server = await start_imap_server(ctx, endpoint, cleartext_login=True)
    yield server.sockets[0].getsockname()[1]
    await close_server(server)


def session(port: int, *commands: tuple[str, ...]) -> list[list[bytes]]:
    """Log in, select INBOX, run `commands` (imaplib uid/status/search calls)."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login(BOB, "bob-pass")
    client.select("INBOX")
    out = []
    for name, *args in commands:
        typ, data = getattr(client, name)(*args)
        assert typ == "OK", (name, data)
        out.append(data)
    client.logout()
    return out


def fetched_headers(data: list) -> dict[int, bytes]:
    """UID -> the header block of each FETCH answer."""
    found = {}
    for part in data:
        if isinstance(part, tuple):
            uid = int(re.search(rb"UID (\d+)", part[0]).group(1))
            found[uid] = part[1]
    return found


def expected(i: int) -> bytes:
    header = ParsedMessage(mail(i)).mime.header
    return header_fields(header, ("FROM", "SUBJECT", "DATE"), False)


async def test_header_fetch_status_and_header_search_open_no_message_file(
    store: MailStore, port: int
) -> None:
    for i in range(40):
        store.deliver(BOB, mail(i))  # the MDA's path: the record is written with the mail
    before = folder_index.message_reads
    fetch, status, search, envelope = await asyncio.to_thread(
        session,
        port,
        ("uid", "FETCH", "1:*", f"(FLAGS {HEADERS})"),
        ("status", "INBOX", "(MESSAGES UNSEEN SIZE)"),
        ("uid", "SEARCH", "FROM", "alice17@a.example", "SUBJECT", "note"),
        ("uid", "FETCH", "5", "(RFC822.SIZE ENVELOPE BODYSTRUCTURE)"),
    )
    assert folder_index.message_reads == before  # not one message file was opened
    headers = fetched_headers(fetch)
    assert headers == {i + 1: expected(i) for i in range(40)}
    size = sum(len(ParsedMessage(mail(i)).raw) for i in range(40))
    assert status == [f"INBOX (MESSAGES 40 UNSEEN 40 SIZE {size})".encode()]
    assert search == [b"18"]
    assert b"RFC822.SIZE %d" % len(ParsedMessage(mail(4)).raw) in envelope[0]
    assert b'ENVELOPE ("Mon, 2 Nov 2026 10:04:00 +0000" "note 4  folded on"' in envelope[0]
    assert b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii")' in envelope[0]
    # A body fetch still reads the file, off the loop (ReadMessages).
    await asyncio.to_thread(session, port, ("uid", "FETCH", "3", "(BODY.PEEK[TEXT])"))
    assert folder_index.message_reads == before + 1


async def test_index_survives_a_restart_and_repairs_a_crash_between_file_and_record(
    store: MailStore, port: int, tmp_path: Path
) -> None:
    for i in range(10):
        store.deliver(BOB, mail(i))
    inbox = store.folder(BOB)
    # A crash after the message's rename but before its record: the file alone.
    inbox.write(mail(10), host=store.host)
    # ...and a record line torn by a crash in the middle of the append.
    with open(inbox.path / JOURNAL, "ab") as f:
        f.write(b'0badc0de ["half a rec')
    INDEXES.forget()  # a restarted process has nothing in memory
    before = folder_index.message_reads
    (fetch,) = await asyncio.to_thread(session, port, ("uid", "FETCH", "1:*", f"({HEADERS})"))
    assert fetched_headers(fetch) == {i + 1: expected(i) for i in range(11)}
    assert folder_index.message_reads == before + 1  # only the message without a record
    assert (inbox.path / SNAPSHOT).exists()

    # Restart again: everything is on disk now, so nothing is read.
    INDEXES.forget()
    fresh = MailStore(tmp_path / "mail")
    assert fresh.folder(BOB).path == inbox.path
    before = folder_index.message_reads
    (fetch,) = await asyncio.to_thread(session, port, ("uid", "FETCH", "1:*", f"({HEADERS})"))
    assert fetched_headers(fetch) == {i + 1: expected(i) for i in range(11)}
    assert folder_index.message_reads == before


async def test_missing_index_is_rebuilt_and_expunged_records_dropped(
    store: MailStore, port: int
) -> None:
    for i in range(6):
        store.deliver(BOB, mail(i))
    inbox = store.folder(BOB)
    for name in (SNAPSHOT, JOURNAL):
        with __import__("contextlib").suppress(FileNotFoundError):
            os.unlink(inbox.path / name)
    INDEXES.forget()
    gone = inbox.messages()[0].key
    inbox.remove([gone])
    before = folder_index.message_reads
    (fetch,) = await asyncio.to_thread(session, port, ("uid", "FETCH", "1:*", f"({HEADERS})"))
    assert fetched_headers(fetch) == {i + 1: expected(i) for i in range(1, 6)}
    assert folder_index.message_reads == before + 5  # rebuilt from the Maildir, once
    snapshot = (inbox.path / SNAPSHOT).read_bytes()
    assert snapshot.count(b"\n") == 1 + 5 and gone.encode() not in snapshot
    assert not (inbox.path / JOURNAL).exists()


async def test_append_copy_and_move_write_off_the_loop_with_index_records(
    store: MailStore, port: int
) -> None:
    for i in range(4):
        store.deliver(BOB, mail(i))

    def work() -> list:
        client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        client.login(BOB, "bob-pass")
        client.select("INBOX")
        client.uid("STORE", "2", "+FLAGS", "(\\Flagged $Label1)")
        out = [
            client.uid("COPY", "1:2", "Sent"),
            client.uid("MOVE", "3", "Trash"),
            client.append("Sent", "(\\Seen $Work)", None, mail(9)),
        ]
        before = folder_index.message_reads
        client.select("Sent")
        out.append(client.uid("FETCH", "1:*", f"(FLAGS {HEADERS})"))
        out.append(folder_index.message_reads - before)
        client.select("INBOX")
        out.append(client.uid("SEARCH", "ALL"))
        client.logout()
        return out

    copied, moved, appended, fetched, reads, inbox = await asyncio.to_thread(work)
    assert copied[0] == "OK"
    assert moved[0] == "OK" and inbox[1] == [b"1 2 4"]
    assert appended[0] == "OK" and b"[APPENDUID" in appended[1][0]
    assert reads == 0  # the copies and the append came with their index records
    headers = fetched_headers(fetched[1])
    assert headers == {1: expected(0), 2: expected(1), 3: expected(9)}
    flags = b" ".join(p[0] if isinstance(p, tuple) else p for p in fetched[1])
    assert b"UID 2 FLAGS (\\Flagged $Label1)" in flags
    assert b"UID 3 FLAGS (\\Seen $Work)" in flags
    assert len(store.folder(BOB, "Trash").listing()) == 1


def test_deliveries_alone_grow_the_log_and_the_next_reader_compacts_it(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_index, "COMPACT_AT", 5)
    for i in range(3):
        store.deliver(BOB, mail(i))
    inbox = store.folder(BOB)
    keys = [m.key for m in inbox.messages()]
    assert INDEXES.summaries(inbox.path, keys).keys() == set(keys)  # no snapshot yet: one
    assert (inbox.path / SNAPSHOT).exists() and not (inbox.path / JOURNAL).exists()
    for i in range(3, 10):
        store.deliver(BOB, mail(i))  # 7 records appended, no reader
    assert (inbox.path / JOURNAL).read_bytes().count(b"\n") == 7
    before = folder_index.message_reads
    keys = [m.key for m in inbox.messages()]
    assert len(INDEXES.summaries(inbox.path, keys[:1])) == 1  # nothing missing, but...
    assert folder_index.message_reads == before
    assert not (inbox.path / JOURNAL).exists()  # ...the log was folded into the snapshot
    assert (inbox.path / SNAPSHOT).read_bytes().count(b"\n") == 1 + 10

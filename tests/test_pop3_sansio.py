"""The POP3 core asks for storage instead of calling it (StorageRequests, h11-style), and
the listener answers off the event loop: a login reads no message file (sizes come from
the folder index) and RETR reads exactly one."""

from __future__ import annotations

import asyncio
import poplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.pop3_server import start_pop3_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.protocols.pop3 import (
    Exchange,
    MaildropEntry,
    OpenMaildrop,
    POP3Connection,
    ReadMessage,
    RemoveMessages,
    wire_size,
)
from app.world import folder_index
from app.world.accounts import Accounts
from app.world.folder_index import INDEXES
from app.world.mailstore import MailStore

BOB = "bob@b.example"


class NoStorage:
    """Accounts only: any storage call from inside the core fails the test."""

    def authenticate(self, user: str, password: str) -> bool:
        return password == "pw"

    def apop_secret(self, user: str) -> str | None:
        return "pw"

    def open(self, user: str) -> list[MaildropEntry]:
        raise AssertionError("the core opened the maildrop itself")

    def read(self, user: str, key: str) -> bytes:
        raise AssertionError("the core read a message itself")

    def delete(self, user: str, keys: list[str]) -> list[str]:
        raise AssertionError("the core removed messages itself")


def test_core_hands_storage_to_the_adapter_and_holds_pipelined_commands() -> None:
    conn = POP3Connection(NoStorage(), tls_active=True, defer_io=True)
    out = conn.receive_data(b"USER bob\r\nPASS pw\r\nSTAT\r\nRETR 1\r\n")
    assert isinstance(out[0], Exchange) and out[0].reply.data.startswith(b"+OK")
    assert out[1:] == [OpenMaildrop("bob")]  # STAT and RETR wait for the maildrop
    out = conn.storage_done([MaildropEntry("k1", 7), MaildropEntry("k2", 9)])
    assert [o.reply.data for o in out[:2]] == [  # type: ignore[union-attr]
        b"+OK bob has 2 messages (16 octets)\r\n",
        b"+OK 2 16\r\n",
    ]
    assert out[2:] == [ReadMessage("bob", "k1")]
    out = conn.storage_done(b"Subject: x\n\n.hi\n")
    assert out[0].reply.data == b"+OK 19 octets\r\nSubject: x\r\n\r\n..hi\r\n.\r\n"  # type: ignore[union-attr]
    out = conn.receive_data(b"DELE 2\r\nQUIT\r\n")
    assert out[-1] == RemoveMessages("bob", ("k2",))
    (done,) = conn.storage_done(["cur/k2:2,S"])
    assert isinstance(done, Exchange) and done.removed == ("cur/k2:2,S",)
    assert done.reply.data == b"+OK signing off (1 messages removed, 1 left)\r\n"
    # A storage error is an ordinary -ERR; the maildrop stays usable.
    conn = POP3Connection(NoStorage(), tls_active=True, defer_io=True)
    conn.receive_data(b"USER bob\r\nPASS pw\r\n")
    conn.storage_done([MaildropEntry("k1", 7)])
    conn.receive_data(b"RETR 1\r\n")
    (err,) = conn.storage_done(error=FileNotFoundError("k1"))
    assert err.reply.data.startswith(b"-ERR [SYS/TEMP] message 1")  # type: ignore[union-attr]


def mail(i: int) -> bytes:
    return f"From: alice@a.example\nSubject: {i}\n\n{'line of text ' * i}\n".encode()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[int, MailStore]]:
    INDEXES.forget()
    store = MailStore(tmp_path / "mail")
    ctx = EngineContext(store, Accounts(), LabTLS(tmp_path / "no-tls"), Recorder().emit)
    endpoint = Endpoint(3, "POP3", 110, "pop3-b", "mua-bob", hostname="mx.b.example")
    server = await start_pop3_server(ctx, endpoint, cleartext_login=True)
    yield server.sockets[0].getsockname()[1], store
    await close_server(server)


async def test_login_reads_no_message_file_and_retr_reads_one(
    served: tuple[int, MailStore],
) -> None:
    port, store = served
    for i in range(30):
        store.deliver(BOB, mail(i))
    before = folder_index.message_reads

    def login_and_list() -> tuple[list[bytes], int]:
        client = poplib.POP3("127.0.0.1", port, timeout=10)
        client.user(BOB)
        client.pass_("bob-pass")
        listing = client.list()[1]
        reads_after_login = folder_index.message_reads
        client.retr(3)
        client.quit()
        return listing, reads_after_login

    listing, reads_after_login = await asyncio.to_thread(login_and_list)
    assert listing == [b"%d %d" % (i + 1, wire_size(mail(i))) for i in range(30)]
    assert reads_after_login == before  # sizes from the folder index
    assert folder_index.message_reads == before + 1  # RETR 3
    assert all(p.startswith("cur/") for p in store.folder(BOB).listing())  # seen: new/ → cur/

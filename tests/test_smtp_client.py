"""The MTAs' own SMTP/LMTP client: the sans-IO reply reader, and the asyncio client
against the real aiosmtpd servers, lock-step and pipelined (RFC 2920)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.engines.base import Endpoint, EngineContext
from app.engines.relay import deliver_lmtp
from app.engines.smtp_client import Disconnected, SMTPClient
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.lab.stages import settle
from app.protocols.smtp_client import (
    ProtocolError,
    Reply,
    ReplyReader,
    command,
    data_block,
    extensions,
)
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import QueuedMail, Spool

MESSAGE = b"From: alice@a.example\r\nTo: bob@b.example\r\nSubject: hi\r\n\r\n.dot line\r\n"


# -- the sans-IO core ---------------------------------------------------------
def test_replies_are_complete_only_at_their_last_line_even_split_anywhere() -> None:
    wire = b"250-mx.b.example\r\n250-PIPELINING\r\n250 HELP\r\n354 go ahead\r\n"
    for cut in range(1, len(wire)):
        reader = ReplyReader()
        got = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert got == [Reply(250, "mx.b.example\nPIPELINING\nHELP"), Reply(354, "go ahead")]


@pytest.mark.parametrize(
    "wire",
    [b"hello\r\n", b"25 short\r\n", b"250-a\r\n251 b\r\n", b"2x0 nope\r\n", b"2" * 3000],
)
def test_what_is_not_an_smtp_reply_is_an_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyReader().feed(wire)


def test_commands_cannot_smuggle_a_second_line() -> None:
    assert command("RCPT", "TO:<bob@b.example>") == b"RCPT TO:<bob@b.example>\r\n"
    with pytest.raises(ValueError):
        command("MAIL", "FROM:<a@b>\r\nRCPT TO:<x@y>")


def test_the_data_block_doubles_leading_dots_and_ends_with_a_dot_line() -> None:
    assert data_block(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_block(b"") == b".\r\n"


def test_extensions_are_read_from_the_lines_after_the_greeting_line() -> None:
    reply = Reply(250, "mx.b.example\nSIZE 10485760\npipelining\nHELP")
    assert extensions(reply) == {"SIZE": "10485760", "PIPELINING": "", "HELP": ""}


# -- against aiosmtpd -----------------------------------------------------------
class Servers:
    def __init__(self, root: Path, tls: LabTLS) -> None:
        self.recorder = Recorder()
        self.accounts = Accounts()
        self.store = MailStore(root / "mail")
        self.ctx = EngineContext(self.store, self.accounts, tls, self.recorder.emit)
        self.queue = Spool(root / "in")
        self.tls = tls
        self.ports: dict[str, int] = {}
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        mx = Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example")
        for name, pipelining in (("plain", False), ("pipelining", True)):
            policy = InboundPolicy(
                self.accounts, {"b.example"}, self.queue, "mx.b.example", pipelining=pipelining
            )
            server = await start_smtp_server(self.ctx, mx, policy)
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        mda = Endpoint(3, "LMTP", 24, "mda-b", "mta-b", "mda.b.example")
        policy = DeliveryPolicy(self.accounts, self.store, "mda.b.example", pipelining=True)
        server = await start_smtp_server(self.ctx, mda, policy, lmtp=True)
        self.servers.append(server)
        self.ports["lmtp"] = server.sockets[0].getsockname()[1]

    def lines(self, session: str) -> list[str]:
        return [
            f"{e.direction} {e.text.splitlines()[0] if e.text else ''}"
            for e in self.recorder.events
            if e.session == session and e.direction != "note"
        ]


@pytest.fixture
async def servers(tmp_path: Path, lab_tls: LabTLS):
    s = Servers(tmp_path, lab_tls)
    await s.start()
    yield s
    for server in s.servers:
        server.close()
        await server.wait_closed()


async def _session(servers: Servers, port: str) -> tuple[SMTPClient, str]:
    client, greeting = await SMTPClient.open("127.0.0.1", servers.ports[port])
    assert greeting.code == 220
    assert (await client.hello("mail.a.example")).code == 250
    assert (await client.starttls(servers.tls.client_context, "mx.b.example")).code == 220
    assert (await client.hello("mail.a.example")).code == 250
    return client, servers.recorder.events[-1].session


async def test_without_pipelining_each_command_waits_for_its_reply(servers: Servers) -> None:
    client, session = await _session(servers, "plain")
    assert "PIPELINING" not in client.extensions
    t = await client.send("alice@a.example", ["bob@b.example"], MESSAGE)
    await client.quit()
    assert t.accepted == ["bob@b.example"] and t.data[0].code == 250
    lines = [line.split()[0] + " " + line.split()[1][:4] for line in servers.lines(session)]
    start = lines.index("c2s MAIL")
    assert lines[start : start + 9] == [
        "c2s MAIL", "s2c 250", "c2s RCPT", "s2c 250", "c2s DATA", "s2c 354",
        "c2s From", "c2s .", "s2c 250",
    ]  # fmt: skip
    [entry] = servers.queue.entries()
    assert entry.data.endswith(MESSAGE)  # the server undid the doubled dot


async def test_with_pipelining_the_group_goes_out_at_once(servers: Servers) -> None:
    client, session = await _session(servers, "pipelining")
    assert "PIPELINING" in client.extensions
    t = await client.send(
        "alice@a.example", ["bob@b.example", "nobody@b.example", "carol@c.example"], MESSAGE
    )
    assert t.accepted == ["bob@b.example"]
    assert t.rcpts["nobody@b.example"].code == 550 and t.data[0].code == 250
    # The server read the whole group before it answered any of it.
    lines = [line.split()[0] + " " + line.split()[1][:4] for line in servers.lines(session)]
    start = lines.index("c2s MAIL")
    assert lines[start : start + 5] == ["c2s MAIL", "c2s RCPT", "c2s RCPT", "c2s RCPT", "c2s DATA"]
    # Unknown user 550, not a domain of this MX 554 (no open relay), then 354.
    assert lines[start + 5 : start + 10] == ["s2c 250", "s2c 250", "s2c 550", "s2c 554", "s2c 354"]
    # Each reply is explained as the answer to its own command, not to the last one sent.
    keys = [e.key for e in servers.recorder.events if e.session == session and e.direction == "s2c"]
    start = keys.index("smtp.mail.250")
    assert keys[start : start + 5] == [
        "smtp.mail.250", "smtp.rcpt.250", "smtp.rcpt.550", "smtp.rcpt.554", "smtp.data.354",
    ]  # fmt: skip
    # Nobody accepted: DATA is refused and the transaction is reset, nothing is queued.
    t = await client.send("alice@a.example", ["nobody@b.example"], MESSAGE)
    assert t.accepted == [] and t.data[0].code in (503, 554)
    assert len(servers.queue.entries()) == 1
    # The session is still good for the next mail.
    t = await client.send("alice@a.example", ["bob@b.example"], MESSAGE)
    assert t.data[0].code == 250 and len(servers.queue.entries()) == 2
    await client.quit()


async def test_lmtp_answers_data_once_per_accepted_recipient(servers: Servers) -> None:
    client, _ = await SMTPClient.open("127.0.0.1", servers.ports["lmtp"])
    assert (await client.hello("mx.b.example", lmtp=True)).code == 250
    assert "PIPELINING" in client.extensions
    t = await client.send(
        "alice@a.example", ["bob@b.example", "ghost@b.example"], MESSAGE, lmtp=True
    )
    await client.quit()
    assert t.accepted == ["bob@b.example"] and [r.code for r in t.data] == [250]
    assert len(servers.store.folder("bob@b.example", "INBOX").messages()) == 1


async def test_a_server_that_does_not_speak_smtp_is_a_clear_error() -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(liar, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Disconnected, match="not an SMTP reply"):
            await SMTPClient.open("127.0.0.1", port, timeout=5)
    finally:
        server.close()
        await server.wait_closed()


async def test_one_lmtp_transaction_and_each_recipient_judged_on_its_own(
    servers: Servers, tmp_path: Path
) -> None:
    for name in ("carol@b.example", "dave@b.example"):
        servers.accounts.passwords[name] = "x"
    # Carol's mailbox cannot be written (a file stands where its directory should be):
    # the MDA defers her alone with 451 after ".", as RFC 2033 §4.2 lets it.
    servers.store.account_path("carol@b.example").write_bytes(b"not a Maildir")
    queue = Spool(tmp_path / "queue")
    rcpts = ("bob@b.example", "carol@b.example", "ghost@b.example", "dave@b.example")
    entry = QueuedMail("Q1", "alice@a.example", (*rcpts, "bob@b.example"), MESSAGE, "8BITMIME")
    await queue.put_async(entry)
    result = await deliver_lmtp(servers.ctx, "127.0.0.1", servers.ports["lmtp"], entry, lhlo="mx")
    assert result.delivered == ["bob@b.example", "dave@b.example"]
    assert list(result.deferred) == ["carol@b.example"] and "451 4.3.0" in result.deferred[
        "carol@b.example"
    ]
    assert list(result.refused) == ["ghost@b.example"]
    # One transaction: one MAIL (with the BODY the mail came with), one DATA, and a reply
    # per accepted recipient after ".", in RCPT order.
    texts = [e.text for e in servers.recorder.events if e.protocol == "LMTP"]
    assert [t for t in texts if t.startswith("MAIL")] == [
        "MAIL FROM:<alice@a.example> BODY=8BITMIME"
    ]
    assert texts.count("DATA") == 1
    after = texts[texts.index(".") + 1 :][:3]
    assert [t.split()[:3] for t in after] == [
        ["250", "2.0.0", "<bob@b.example>"],
        ["451", "4.3.0", "<carol@b.example>"],
        ["250", "2.0.0", "<dave@b.example>"],
    ]
    assert len(servers.store.folder("bob@b.example").messages()) == 1  # named twice, one copy
    # The queue keeps the deferred recipient only, so the retry serves nobody twice.
    await settle(queue, entry, result)
    [left] = queue.entries()
    assert left.rcpt_tos == ("carol@b.example",) and left.body == "8BITMIME"

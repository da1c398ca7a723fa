"""The SMTP command-order core against the real aiosmtpd servers: the same lines,
sent to both, must get the same replies (text, not only codes), so what predict
mode shows is what the lab's servers really say."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from pathlib import Path

import pytest

from app.engines.base import Endpoint, EngineContext
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.protocols.smtp_order import LMTP, MX, SUBMISSION, Phase, Role, SmtpOrder
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import Spool

PLAIN_OK = "AUTH PLAIN " + base64.b64encode(b"\0alice@a.example\0alice-pass").decode()
PLAIN_BAD = "AUTH PLAIN " + base64.b64encode(b"\0alice@a.example\0wrong").decode()
TLS = "STARTTLS"  # handshake follows a 220 on both sides


def _talk(port: int, lines: list[str], ctx: ssl.SSLContext) -> list[str]:
    """Send each line on a raw socket and collect the complete replies."""
    sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port), timeout=10)
    replies: list[str] = []
    reader = sock.makefile("rb")

    def read_reply() -> str:
        got = []
        while True:
            line = reader.readline().decode().rstrip("\r\n")
            got.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(got)

    try:
        read_reply()  # greeting
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            reply = read_reply()
            replies.append(reply)
            if line == TLS and reply.startswith("220") and not isinstance(sock, ssl.SSLSocket):
                sock = ctx.wrap_socket(sock, server_hostname="mail.a.example")
                reader = sock.makefile("rb")
    finally:
        sock.close()
    return replies


def _core(role: Role, lines: list[str]) -> list[str]:
    accounts = Accounts()
    core = SmtpOrder(role, accounts.check)
    replies = []
    for line in lines:
        replies.append(core.command(line).text)
        if core.phase is Phase.TLS:
            core.tls_started()
    return replies


@pytest.fixture
async def servers(tmp_path: Path, lab_tls: LabTLS):
    accounts = Accounts()
    ctx = EngineContext(MailStore(tmp_path / "mail"), accounts, lab_tls, Recorder().emit)
    specs = {
        "submission": (
            Endpoint(1, "SMTP", 587, "msa-a", "mua-alice", "mail.a.example"),
            SubmissionPolicy(accounts, Spool(tmp_path / "out"), "mail.a.example"),
            {"require_auth": True},
        ),
        "mx": (
            Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example"),
            InboundPolicy(accounts, {"b.example"}, Spool(tmp_path / "in"), "mx.b.example"),
            {},
        ),
        "lmtp": (
            Endpoint(3, "LMTP", 24, "mda-b", "mta-b", "mda.b.example"),
            DeliveryPolicy(accounts, ctx.store, "mda.b.example"),
            {"lmtp": True},
        ),
    }
    running, ports = [], {}
    for name, (endpoint, policy, kwargs) in specs.items():
        server = await start_smtp_server(ctx, endpoint, policy, **kwargs)
        running.append(server)
        ports[name] = server.sockets[0].getsockname()[1]
    yield ports
    for server in running:
        server.close()
        await server.wait_closed()


SUBMISSION_CASES = {
    "the happy path": [
        "EHLO pc",
        TLS,
        "EHLO pc",
        PLAIN_OK,
        "MAIL FROM:<alice@a.example>",
        "RCPT TO:<bob@b.example>",
        "DATA",
    ],
    "MAIL before EHLO": ["MAIL FROM:<alice@a.example>", "HELO pc", "RSET", "NOOP"],
    "AUTH before STARTTLS": ["EHLO pc", PLAIN_OK, "MAIL FROM:<alice@a.example>"],
    "AUTH after HELO": ["HELO pc", "AUTH PLAIN", TLS, "HELO pc", "AUTH PLAIN x"],
    "MAIL without AUTH inside TLS": [
        "EHLO pc",
        TLS,
        "MAIL FROM:<alice@a.example>",
        "EHLO pc",
        "RCPT TO:<bob@b.example>",
        "DATA",
        "VRFY bob",
        "HELP",
    ],
    "wrong password, then right, then again": [
        "EHLO pc",
        TLS,
        "EHLO pc",
        PLAIN_BAD,
        PLAIN_OK,
        PLAIN_OK,
    ],
    "broken AUTH values": [
        "EHLO pc",
        TLS,
        "EHLO pc",
        "AUTH",
        "AUTH PLAIN !!!",
        "AUTH PLAIN " + base64.b64encode(b"no-nul").decode(),
        "AUTH CRAM-MD5",
        "AUTH PLAIN a b",
    ],
    "order inside the transaction": [
        "EHLO pc",
        TLS,
        "EHLO pc",
        PLAIN_OK,
        "RCPT TO:<bob@b.example>",
        "DATA",
        "MAIL FROM:<alice@a.example>",
        "MAIL FROM:<alice@a.example>",
        "DATA",
        "RSET",
        "RCPT TO:<bob@b.example>",
    ],
    "syntax": [
        "EHLO",
        "HELO",
        "EHLO pc",
        "MAIL alice",
        "MAIL FROM:",
        "MAIL FROM:<a@b",
        "FOO bar",
        "",
        "STARTTLS now",
        "NOOP whatever",
        "QUIT now",
        "RSET x",
    ],
    "parameters": [
        "EHLO pc",
        TLS,
        "EHLO pc",
        PLAIN_OK,
        "MAIL FROM:<alice@a.example> BODY=9BIT",
        "MAIL FROM:<alice@a.example> SIZE=x",
        "MAIL FROM:<alice@a.example> SMTPUTF8",
        "MAIL FROM:<alice@a.example> FOO=1",
        "MAIL FROM:<alice@a.example> =1",
        "MAIL FROM:<alice@a.example> SIZE=99999999999",
        "MAIL FROM:<alice@a.example> BODY=8BITMIME",
        "RCPT TO:<bob@b.example> NOTIFY=NEVER",
        "RCPT TO:<bob@b.example> =x",
    ],
    "HELO then parameters": ["HELO pc", TLS, "HELO pc", PLAIN_OK],
    "STARTTLS twice (refused inside TLS; the session goes on)": [
        "EHLO pc", TLS, "EHLO pc", TLS, "NOOP"
    ],
    "non-ASCII": ["EHLO pc", "MAIL FROM:<アリス@a.example>", "ＭＡＩＬ FROM:<a@a.example>"],
    "a long line": ["EHLO pc", "NOOP " + "x" * 600],
    "a bare CR inside a line": ["EHLO pc\rX-Injected: yes", "EHLO pc", "NOOP\rNOOP", "RSET"],
}
MX_CASES = {
    "relay path": [
        "EHLO mail.a.example",
        TLS,
        "EHLO mail.a.example",
        "MAIL FROM:<alice@a.example>",
        "RCPT TO:<bob@b.example>",
        "DATA",
    ],
    "AUTH on the MX": [
        "EHLO x",
        "AUTH PLAIN",
        TLS,
        "EHLO x",
        PLAIN_OK,
        "HELP",
        "VRFY <bob@b.example>",
    ],
    "order": [
        "RCPT TO:<bob@b.example>",
        "DATA",
        "EHLO x",
        "DATA",
        "MAIL FROM:<a@a.example>",
        "MAIL FROM:<a@a.example>",
        "RSET",
        "DATA",
    ],
    "a bare CR, a repeated recipient": [
        "EHLO x",
        "MAIL FROM:<a@a.example>\rX: y",
        "MAIL FROM:<a@a.example>",
        "RCPT TO:<bob@b.example>",
        "RCPT TO:<BOB@b.example>",
        "RCPT TO:<bob@b.example>\r",
        "QUIT",
    ],
}
LMTP_CASES = {
    "delivery path": [
        "LHLO mx.b.example",
        "MAIL FROM:<alice@a.example>",
        "RCPT TO:<bob@b.example>",
        "DATA",
    ],
    "SMTP greetings are not LMTP": [
        "EHLO x",
        "HELO x",
        "MAIL FROM:<a@a.example>",
        "STARTTLS",
        "AUTH PLAIN",
        "LHLO",
        "LHLO x",
        "AUTH PLAIN",
        "HELP",
    ],
}


@pytest.mark.parametrize(
    ("server", "role", "lines"),
    [pytest.param("submission", SUBMISSION, v, id=f"587: {k}") for k, v in SUBMISSION_CASES.items()]
    + [pytest.param("mx", MX, v, id=f"25: {k}") for k, v in MX_CASES.items()]
    + [pytest.param("lmtp", LMTP, v, id=f"LMTP: {k}") for k, v in LMTP_CASES.items()],
)
async def test_core_answers_like_the_real_server(
    servers: dict[str, int], lab_tls: LabTLS, server: str, role: Role, lines: list[str]
) -> None:
    real = await asyncio.to_thread(_talk, servers[server], lines, lab_tls.client_context)
    assert _core(role, lines) == real


def test_replay_keeps_a_policy_refusal() -> None:
    core = SmtpOrder(SUBMISSION)
    core.replay("EHLO pc", 250)
    core.replay("STARTTLS", 220)
    core.tls_started()
    core.replay("EHLO pc", 250)
    core.replay(PLAIN_OK, 235)
    core.replay("MAIL FROM:<alice@a.example>", 250)
    core.replay("RCPT TO:<nobody@b.example>", 550)  # the policy said no: no recipient yet
    assert core.command("DATA").text == "503 5.5.1 Error: need RCPT command"
    core.replay("RCPT TO:<bob@b.example>", 250)
    assert core.command("DATA").code == 354
    core.end_data()
    assert core.command("RCPT TO:<bob@b.example>").text == "503 5.5.1 Error: need MAIL command"


def test_auth_login_and_cancel() -> None:
    core = SmtpOrder(SUBMISSION, Accounts().check)
    for line in ("EHLO pc", "STARTTLS"):
        core.command(line)
    core.tls_started()
    core.command("EHLO pc")
    assert core.command("AUTH LOGIN").text == "334 VXNlcm5hbWU6"
    assert core.command(base64.b64encode(b"alice@a.example").decode()).code == 334
    assert core.command(base64.b64encode(b"alice-pass").decode()).code == 235
    core2 = SmtpOrder(SUBMISSION)
    for line in ("EHLO pc", "STARTTLS"):
        core2.command(line)
    core2.tls_started()
    core2.command("EHLO pc")
    assert core2.command("AUTH PLAIN").text == "334 "
    assert core2.command("*").text == "501 5.7.0 Auth aborted"
    assert core2.phase is Phase.COMMAND


def test_after_quit_nothing_answers() -> None:
    core = SmtpOrder(MX)
    assert core.command("QUIT").text == "221 2.0.0 Bye"
    assert core.command("NOOP").code == 421


def _transaction(port: int, lines: list[str], replies_after_dot: int) -> list[str]:
    """Send the lines (the last one is DATA), a message and ".", and read the replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            got = []
            while True:
                line = reader.readline().decode().rstrip("\r\n")
                got.append(line)
                if len(line) < 4 or line[3] != "-":
                    return "\n".join(got)

        reply()
        out = []
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            out.append(reply())
        sock.sendall(b"Subject: hi\r\n\r\nhello\r\n.\r\n")
        out += [reply() for _ in range(replies_after_dot)]
    return out


QUEUE_ID = re.compile(r"\b[0-9A-F]{10}\b")


@pytest.mark.parametrize(
    ("server", "role", "lines"),
    [
        pytest.param(
            "mx",
            MX,
            ["EHLO x", "MAIL FROM:<a@a.example>", "RCPT TO:<bob@b.example>", "DATA"],
            id="25: one reply after the dot",
        ),
        pytest.param(
            "lmtp",
            LMTP,
            [
                "LHLO mx.b.example",
                "MAIL FROM:<alice@a.example>",
                "RCPT TO:<bob@b.example>",
                "RCPT TO:<ghost@b.example>",
                "RCPT TO:<alice@a.example>",
                "RCPT TO:<bob@b.example>",
                "DATA",
            ],
            id="LMTP: one reply per accepted recipient after the dot, in RCPT order",
        ),
    ],
)
async def test_core_answers_the_end_of_data_like_the_real_server(
    servers: dict[str, int], server: str, role: Role, lines: list[str]
) -> None:
    core = SmtpOrder(role)
    # The MDA refuses the mailbox it does not have; replay keeps that outcome.
    predicted = [core.replay(line, 550 if "ghost" in line else None).text for line in lines]
    after_dot = core.end_data()
    real = await asyncio.to_thread(_transaction, servers[server], lines, len(after_dot))
    real = [QUEUE_ID.sub("QID", text) for text in real]
    for line, mine, theirs in zip(lines, predicted, real, strict=False):
        if "ghost" in line:  # a policy refusal, not order: the core says 250, replay keeps 550
            assert theirs.startswith("550 5.1.1 ") and mine == "250 2.1.5 Ok"
        else:
            assert mine == theirs, line
    after = [QUEUE_ID.sub("QID", r.text) for r in after_dot]
    assert after == real[len(lines) :]
    if role.lmtp:
        assert [t.split()[2] for t in after] == ["<bob@b.example>", "<alice@a.example>"]

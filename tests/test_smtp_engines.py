"""The aiosmtpd-based servers, spoken to by real clients over loopback TCP:
Python's smtplib, curl's smtp:// and swaks. The servers run in the test's event
loop; the blocking clients run in a worker thread."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from app.engines.base import Endpoint, EngineContext
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import Recorder
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import Spool

MESSAGE = b"From: alice@a.example\r\nTo: bob@b.example\r\nSubject: hi\r\n\r\nHello Bob\r\n"


class Lab:
    def __init__(self, root: Path, tls: LabTLS) -> None:
        self.recorder = Recorder()
        self.store = MailStore(root / "mail")
        self.accounts = Accounts()
        self.ctx = EngineContext(self.store, self.accounts, tls, self.recorder.emit)
        self.outbound = Spool(root / "out")
        self.inbound = Spool(root / "in")
        self.tls = tls
        self.ports: dict[str, int] = {}
        self.servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        specs = {
            "submission": (
                Endpoint(1, "SMTP", 587, "msa-a", "mua-alice", "mail.a.example"),
                SubmissionPolicy(self.accounts, self.outbound, "mail.a.example"),
                {"require_auth": True},
            ),
            "submissions": (
                Endpoint(1, "SMTP", 465, "msa-a", "mua-alice", "mail.a.example", implicit_tls=True),
                SubmissionPolicy(self.accounts, self.outbound, "mail.a.example"),
                {"require_auth": True},
            ),
            "mx": (
                Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example"),
                InboundPolicy(self.accounts, {"b.example"}, self.inbound, "mx.b.example"),
                {},
            ),
            "lmtp": (
                Endpoint(3, "LMTP", 24, "mda-b", "mta-b", "mda.b.example"),
                DeliveryPolicy(self.accounts, self.store, "mda.b.example"),
                {"lmtp": True},
            ),
        }
        for name, (endpoint, policy, kwargs) in specs.items():
            server = await start_smtp_server(self.ctx, endpoint, policy, **kwargs)
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for s in self.servers:
            s.close()
            await s.wait_closed()


@pytest.fixture
async def lab(tmp_path: Path, lab_tls: LabTLS):
    lab = Lab(tmp_path, lab_tls)
    await lab.start()
    yield lab
    await lab.close()


def _submit(port: int, tls: LabTLS, password: str = "alice-pass") -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo("client.a.example")
        c.starttls(context=tls.client_context)
        c.ehlo("client.a.example")
        c.login("alice@a.example", password)
        return c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)


async def test_submission_with_starttls_and_auth_queues_the_mail(lab: Lab) -> None:
    refused = await asyncio.to_thread(_submit, lab.ports["submission"], lab.tls)
    assert refused == {}
    [entry] = lab.outbound.entries()
    assert entry.rcpt_tos == ("bob@b.example",)
    # The MSA put its Received: trace on top, naming TLS + AUTH (RFC 3848 ESMTPSA).
    assert entry.data.startswith(b"Received: from client.a.example")
    assert b"with ESMTPSA" in entry.data.split(b"\r\n\r\n")[0]
    texts = [e.text for e in lab.recorder.events]
    assert "STARTTLS" in texts
    auth = next(e for e in lab.recorder.events if e.text.startswith("AUTH PLAIN"))
    assert auth.tls is True
    assert auth.detail["decoded"] == "␀alice@a.example␀alice-pass"


async def test_wrong_password_gets_535_and_three_misses_close(lab: Lab) -> None:
    def attempt() -> list[int]:
        codes = []
        with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=15) as c:
            c.ehlo("x")
            c.starttls(context=lab.tls.client_context)
            c.ehlo("x")
            blob = base64.b64encode(b"\0alice@a.example\0wrong").decode()
            for _ in range(3):
                code, _msg = c.docmd("AUTH", f"PLAIN {blob}")
                codes.append(code)
            # The 421 the server sent on its own is read as the answer to the next command.
            codes.append(c.noop()[0])
            with pytest.raises(smtplib.SMTPServerDisconnected):
                c.noop()
        return codes

    codes = await asyncio.to_thread(attempt)
    assert codes == [535, 535, 535, 421]
    assert any(e.text.startswith("421") for e in lab.recorder.events)


async def test_auth_before_starttls_and_mail_without_auth_are_refused(lab: Lab) -> None:
    def talk() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=10) as c:
            c.ehlo("x")
            assert "auth" not in c.esmtp_features  # AUTH is offered only inside TLS
            blob = base64.b64encode(b"\0alice@a.example\0alice-pass").decode()
            auth_code, _ = c.docmd("AUTH", f"PLAIN {blob}")
            mail_code, _ = c.docmd("MAIL", "FROM:<alice@a.example>")
            return auth_code, mail_code

    auth_code, mail_code = await asyncio.to_thread(talk)
    assert auth_code == 538  # RFC 4954 §4: encryption required for this mechanism
    assert mail_code == 530  # RFC 4954 §6: authentication required


async def test_out_of_order_commands_get_503_and_server_keeps_serving(lab: Lab) -> None:
    def talk() -> list[int]:
        with smtplib.SMTP("127.0.0.1", lab.ports["mx"], timeout=10) as c:
            c.ehlo("mail.a.example")
            codes = [c.docmd("RCPT", "TO:<bob@b.example>")[0], c.docmd("DATA")[0]]
            codes.append(c.docmd("MAIL", "FROM:<alice@a.example>")[0])
            codes.append(c.docmd("MAIL", "FROM:<alice@a.example>")[0])
            codes.append(c.docmd("X" * 600)[0])
            codes.append(c.docmd("NOOP")[0])
            return codes

    assert await asyncio.to_thread(talk) == [503, 503, 250, 503, 500, 250]


async def test_mx_refuses_relay_and_unknown_users(lab: Lab) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", lab.ports["mx"], timeout=10) as c:
            c.ehlo("evil.example")
            assert "auth" not in c.esmtp_features
            c.docmd("MAIL", "FROM:<x@evil.example>")
            return [
                c.docmd("RCPT", "TO:<victim@c.example>"),
                c.docmd("RCPT", "TO:<nobody@b.example>"),
                c.docmd("RCPT", "TO:<bob@b.example>"),
            ]

    (relay, unknown, ok) = await asyncio.to_thread(talk)
    assert relay[0] == 554 and b"5.7.1" in relay[1]
    assert unknown[0] == 550 and b"5.1.1" in unknown[1]
    assert ok[0] == 250


async def test_submission_refuses_recipients_outside_the_lab(lab: Lab) -> None:
    def talk() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=10) as c:
            c.ehlo("x")
            c.starttls(context=lab.tls.client_context)
            c.ehlo("x")
            c.login("alice@a.example", "alice-pass")
            c.docmd("MAIL", "FROM:<alice@a.example>")
            return c.docmd("RCPT", "TO:<someone@gmail.com>")

    code, msg = await asyncio.to_thread(talk)
    assert code == 550 and b"5.7.1" in msg


async def test_lmtp_delivery_writes_the_maildir_and_notes_the_file(lab: Lab) -> None:
    def talk() -> None:
        with smtplib.LMTP("127.0.0.1", lab.ports["lmtp"], timeout=10) as c:
            c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

    await asyncio.to_thread(talk)
    folder = lab.store.folder("bob@b.example")
    [stored] = folder.messages()
    data = folder.read(stored.key)
    assert data.startswith(b"Return-Path: <alice@a.example>\r\n")
    assert b"with LMTP" in data
    note = next(e for e in lab.recorder.events if e.key == "maildir.deliver")
    assert note.text == f"new/{stored.key}"


async def test_implicit_tls_submission_on_465(lab: Lab) -> None:
    def talk() -> dict:
        with smtplib.SMTP_SSL(
            "127.0.0.1", lab.ports["submissions"], timeout=10, context=lab.tls.client_context
        ) as c:
            c.login("alice@a.example", "alice-pass")
            return c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

    assert await asyncio.to_thread(talk) == {}
    assert lab.recorder.events[0].key == "tls.handshake"
    assert all(e.tls for e in lab.recorder.events)


async def test_garbage_bytes_do_not_stop_the_server(lab: Lab) -> None:
    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", lab.ports["mx"]), timeout=10) as s:
            s.recv(1024)
            s.sendall(b"\x00\xff\xfe garbage \x00\r\n")
            return s.recv(1024)

    reply = await asyncio.to_thread(talk)
    assert reply.startswith(b"500")
    assert (
        await asyncio.to_thread(lambda: smtplib.SMTP("127.0.0.1", lab.ports["mx"]).noop()[0]) == 250
    )


async def test_curl_submits_with_starttls_and_auth(lab: Lab, tmp_path: Path) -> None:
    mail = tmp_path / "mail.txt"
    mail.write_bytes(MESSAGE)
    cmd = [
        "curl",
        "-sS",
        "--ssl-reqd",
        "--cacert",
        str(lab.tls.ca_file),
        f"smtp://127.0.0.1:{lab.ports['submission']}",
        "--mail-from",
        "alice@a.example",
        "--mail-rcpt",
        "bob@b.example",
        "-u",
        "alice@a.example:alice-pass",
        "-T",
        str(mail),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert len(lab.outbound) == 1


async def test_swaks_submits_with_starttls_and_auth(lab: Lab) -> None:
    cmd = [
        "swaks",
        "--server",
        "127.0.0.1",
        "--port",
        str(lab.ports["submission"]),
        "--from",
        "alice@a.example",
        "--to",
        "bob@b.example",
        "--tls",
        "--tls-ca-path",
        str(lab.tls.ca_file),
        "--tls-verify",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@a.example",
        "--auth-password",
        "alice-pass",
        "--helo",
        "swaks.a.example",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert len(lab.outbound) == 1


async def test_a_held_multi_line_reply_reaches_the_client_and_the_view_whole(lab: Lab) -> None:
    # The tap holds "250-" lines back to write them with the last one: none may be lost,
    # reordered or shown apart in the view.
    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", lab.ports["mx"]), timeout=10) as s:
            s.recv(1024)
            s.sendall(b"EHLO client.example\r\n")
            return s.recv(4096)

    reply = await asyncio.to_thread(talk)
    lines = reply.split(b"\r\n")
    assert lines[0].startswith(b"250-mx.b.example") and lines[-2].startswith(b"250 ")
    assert lines[-1] == b"" and len(lines) >= 4
    shown = [e.text for e in lab.recorder.events if e.key == "smtp.ehlo.250"]
    assert shown == [reply.decode().rstrip("\r\n").replace("\r\n", "\n")]


async def test_pipelined_commands_after_a_multi_line_reply_are_answered_in_order(
    lab: Lab,
) -> None:
    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", lab.ports["mx"]), timeout=10) as s:
            s.recv(1024)
            s.sendall(b"EHLO c.example\r\nNOOP\r\nEHLO d.example\r\nQUIT\r\n")
            got = b""
            while chunk := s.recv(4096):
                got += chunk
            return got

    reply = (await asyncio.to_thread(talk)).decode()
    codes = [line[:4] for line in reply.split("\r\n") if line and line[3] == " "]
    assert codes == ["250 ", "250 ", "250 ", "221 "]

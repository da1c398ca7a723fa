"""The aiosmtpd-based servers, spoken to by real clients over loopback TCP:
Python's smtplib, curl's smtp:// and swaks. The servers run in the test's event
loop; the blocking clients run in a worker thread."""

from __future__ import annotations

import asyncio
import base64
import re
import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from app.engines.base import Endpoint, EngineContext
from app.engines.relay import deliver_lmtp
from app.engines.smtp_policies import (
    DeliveryPolicy,
    InboundPolicy,
    SubmissionPolicy,
    received_header,
)
from app.engines.smtp_server import start_smtp_server
from app.engines.smtp_tap import TappedSMTP
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


# -- command lines, recipients and reply codes ---------------------------------------
ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3} ")


class Raw:
    """A client on a plain socket that sends exactly the bytes it is given."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            line = self.reader.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def send(self, raw: bytes, replies: int = 1) -> list[str]:
        self.sock.sendall(raw)
        return [self.reply() for _ in range(replies)]

    def close(self) -> None:
        self.sock.close()


async def _deliver_inbound(lab: Lab) -> None:
    """The MX's queue goes to the MDA over LMTP, as the world's deliver step does."""
    for entry in lab.inbound.entries():
        await deliver_lmtp(lab.ctx, "127.0.0.1", lab.ports["lmtp"], entry, lhlo="mx.b.example")
        lab.inbound.remove(entry.qid)


def _delivered(lab: Lab, rcpt: str = "bob@b.example") -> list[bytes]:
    lab.store.ensure_account(rcpt)  # an empty mailbox when nothing came
    folder = lab.store.folder(rcpt)
    return [folder.read(m.key) for m in folder.messages()]


async def test_a_bare_cr_in_ehlo_is_refused_and_never_reaches_a_header(lab: Lab) -> None:
    def attack() -> list[str]:
        # The attacker goes on as if the EHLO had been taken.
        c = Raw(lab.ports["mx"])
        try:
            replies = c.send(b"EHLO evil\rX-Injected: yes\r\n")
            replies += c.send(b"MAIL FROM:<alice@a.example>\r\n")
            replies += c.send(b"RCPT TO:<bob@b.example>\r\n")
            replies += c.send(b"DATA\r\n")
            if replies[-1].startswith("354"):
                replies += c.send(MESSAGE + b".\r\n")
            return replies
        finally:
            c.close()

    replies = await asyncio.to_thread(attack)
    assert replies[0].startswith("501 5.5.2 ") and "bare <CR> or <LF>" in replies[0]
    assert replies[1] == "503 5.5.1 Error: send HELO first"
    await _deliver_inbound(lab)
    assert all(b"X-Injected" not in mail for mail in _delivered(lab))
    shown = next(e for e in lab.recorder.events if e.key == "smtp.bare_eol")
    assert shown.text == "EHLO evil␍X-Injected: yes"
    assert any(e.key == "smtp.bare_eol.501" for e in lab.recorder.events)


async def test_a_bare_lf_ends_no_command_on_any_listener(lab: Lab) -> None:
    def talk(port: int, hello: bytes) -> list[str]:
        c = Raw(port)
        try:
            # "NOOP\n": one line with a bare LF; then the same command done right.
            return c.send(hello + b"NOOP\nNOOP\r\n", replies=3)
        finally:
            c.close()

    for name, hello in (("mx", b"EHLO c.example\r\n"), ("lmtp", b"LHLO c.example\r\n")):
        replies = await asyncio.to_thread(talk, lab.ports[name], hello)
        assert replies[1].startswith("501 5.5.2 "), (name, replies)
        assert replies[2] == "250 2.0.0 Ok", (name, replies)


async def test_a_helo_name_that_is_no_domain_is_quoted_in_received(lab: Lab) -> None:
    def talk() -> None:
        with smtplib.SMTP("127.0.0.1", lab.ports["mx"], timeout=10) as c:
            c.ehlo('evil"(X-Injected:yes)')
            c.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)

    await asyncio.to_thread(talk)
    await _deliver_inbound(lab)
    [mail] = _delivered(lab)
    head = mail.split(b"\r\n\r\n")[0]
    assert b'Received: from unknown ([127.0.0.1] helo="evil\\"\\(X-Injected:yes\\)")' in head
    # Every header line is a field or its continuation; no client text stands alone.
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[!-9;-~]+:", line), line


def test_received_never_copies_a_line_break() -> None:
    header = received_header(
        helo="evil\rX-Injected: yes",
        peer_ip="192.0.2.1",
        by="mx.b.example",
        with_="ESMTP",
        qid="ABC",
        rcpt="bob@b.example\r\nX-Injected: yes",
    )
    lines = header.split(b"\r\n")
    assert not any(line.startswith(b"X-Injected") for line in lines)
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    assert lines[0] == b'Received: from unknown ([192.0.2.1] helo="evil?X-Injected: yes")'


async def test_a_repeated_recipient_is_accepted_and_delivered_once(lab: Lab) -> None:
    def talk() -> list[str]:
        c = Raw(lab.ports["mx"])
        try:
            c.send(b"EHLO c.example\r\n")
            c.send(b"MAIL FROM:<alice@a.example>\r\n")
            # 1,000 identical RCPT lines in one write: the amplification attempt.
            replies = c.send(b"RCPT TO:<bob@b.example>\r\n" * 1000, replies=1000)
            replies += c.send(b"DATA\r\n")
            replies += c.send(MESSAGE + b".\r\n")
            return replies
        finally:
            c.close()

    replies = await asyncio.to_thread(talk)
    assert set(replies[:1000]) == {"250 2.1.5 Ok"}
    assert replies[-1].startswith("250 2.0.0 Ok: queued as ")
    [entry] = lab.inbound.entries()
    assert entry.rcpt_tos == ("bob@b.example",)
    await _deliver_inbound(lab)
    assert len(_delivered(lab)) == 1


async def test_a_transaction_takes_at_most_100_recipients(lab: Lab) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", lab.ports["submission"], timeout=10) as c:
            c.ehlo("client.a.example")
            c.starttls(context=lab.tls.client_context)
            c.ehlo("client.a.example")
            c.login("alice@a.example", "alice-pass")
            c.mail("alice@a.example")
            got = [c.rcpt(f"user{i}@b.example") for i in range(101)]
            got.append(c.rcpt("user7@b.example"))  # already in: still taken, once
            got.append(c.data(MESSAGE))
            return got

    got = await asyncio.to_thread(talk)
    assert all(reply == (250, b"2.1.5 Ok") for reply in got[:100])
    assert got[100] == (452, b"4.5.3 Too many recipients")
    assert got[101] == (250, b"2.1.5 Ok")
    assert got[102][0] == 250
    [entry] = lab.outbound.entries()
    assert entry.rcpt_tos == tuple(f"user{i}@b.example" for i in range(100))


async def test_every_reply_after_the_greeting_carries_an_enhanced_code(lab: Lab) -> None:
    def talk() -> dict[str, object]:
        out: dict[str, object] = {}
        with smtplib.SMTP("127.0.0.1", lab.ports["mx"], timeout=10) as c:
            c.ehlo("client.example")
            out["esc"] = c.has_extn("enhancedstatuscodes")
            out["rcpt_first"] = c.rcpt("bob@b.example")
            out["starttls"] = c.starttls(context=lab.tls.client_context)
            c.ehlo("client.example")
            out["esc_tls"] = c.has_extn("enhancedstatuscodes")
            out["mail"] = c.mail("alice@a.example")
            out["nested"] = c.mail("alice@a.example")
            out["rcpt"] = c.rcpt("bob@b.example")
            out["data"] = c.data(MESSAGE)
            out["noop"] = c.noop()
            out["rset"] = c.rset()
            out["vrfy"] = c.verify("bob@b.example")
            out["bogus"] = c.docmd("BOGUS")
            out["quit"] = c.docmd("QUIT")
        with smtplib.LMTP("127.0.0.1", lab.ports["lmtp"], timeout=10) as c:
            _code, text = c.docmd("LHLO", "mx.b.example")
            out["lhlo"] = text
        return out

    out = await asyncio.to_thread(talk)
    assert out["esc"] and out["esc_tls"] and b"ENHANCEDSTATUSCODES" in out["lhlo"]  # type: ignore[operator]
    assert out["rcpt_first"] == (503, b"5.5.1 Error: need MAIL command")
    assert out["starttls"] == (220, b"2.0.0 Ready to start TLS")
    assert out["mail"] == (250, b"2.1.0 Ok")
    assert out["nested"] == (503, b"5.5.1 Error: nested MAIL command")
    assert out["rcpt"] == (250, b"2.1.5 Ok")
    assert out["data"][1].startswith(b"2.0.0 Ok: queued as ")  # type: ignore[index]
    assert out["noop"] == out["rset"] == (250, b"2.0.0 Ok")
    assert out["vrfy"][0] == 252 and out["vrfy"][1].startswith(b"2.0.0 ")  # type: ignore[index]
    assert out["bogus"] == (500, b'5.5.1 Error: command "BOGUS" not recognized')
    assert out["quit"] == (221, b"2.0.0 Bye")
    # What the view shows is what went out: every 2xx/4xx/5xx reply but the greeting
    # and the answers to EHLO/LHLO carries its RFC 3463 code.
    for e in lab.recorder.events:
        if e.direction != "s2c" or e.key.split(".")[1] in ("greeting", "ehlo", "lhlo"):
            continue
        if e.text[:1] in "245":
            assert all(ENHANCED.match(line) for line in e.text.split("\n")), e.text


async def test_a_bare_lf_dot_does_not_end_the_message_on_screen_either(lab: Lab) -> None:
    def talk() -> list[str]:
        c = Raw(lab.ports["mx"])
        try:
            c.send(b"EHLO c.example\r\n")
            c.send(b"MAIL FROM:<alice@a.example>\r\n")
            c.send(b"RCPT TO:<bob@b.example>\r\n")
            c.send(b"DATA\r\n")
            # "\n.\n" ends nothing (RFC 5321 §4.1.1.4 wants CRLF.CRLF): smuggling fails.
            return c.send(b"Subject: x\r\n\r\nhi\n.\nRSET\nbye\r\n.\r\n")
        finally:
            c.close()

    [reply] = await asyncio.to_thread(talk)
    assert reply.startswith("250 2.0.0 Ok: queued as ")
    [entry] = lab.inbound.entries()
    assert entry.data.endswith(b"hi\n.\nRSET\nbye\r\n")
    [content] = [e for e in lab.recorder.events if e.key == "smtp.data.content"]
    assert content.text.endswith("hi\n.\nRSET\nbye")
    assert [e.key for e in lab.recorder.events if e.text == "."] == ["smtp.data.end"]


async def test_aiosmtpd_finds_every_hook_of_each_policy_through_their_short_dir(lab: Lab) -> None:
    # aiosmtpd introspects the handler for every connection; the policies list only
    # their handle_*/auth_* names, and every hook must still be found.
    policies = [
        SubmissionPolicy(lab.accounts, lab.outbound, "mail.a.example"),
        InboundPolicy(lab.accounts, {"b.example"}, lab.inbound, "mx.b.example"),
        DeliveryPolicy(lab.accounts, lab.store, "mda.b.example"),
    ]
    endpoint = Endpoint(2, "SMTP", 25, "mta-b", "mta-a", "mx.b.example")
    for policy in policies:
        every = [n for n in object.__dir__(policy) if n.startswith(("handle_", "auth_"))]
        assert sorted(dir(policy)) == sorted(every)
        server = TappedSMTP(policy, endpoint=endpoint, sink=lab.recorder.emit)
        hooks = {n.removeprefix("handle_") for n in every if n.startswith("handle_")}
        assert set(server._handle_hooks) == hooks and "DATA" in hooks

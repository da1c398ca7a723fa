"""The /lab settings for programs that keep a configuration, run as a user would:
`python -m app` in its own process, the settings read off the /lab page, saved next
to the downloaded CA, and run with Debian's real fetchmail and mbsync (isync)."""

from __future__ import annotations

import asyncio
import html
import imaplib
import os
import poplib
import re
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from served import free_lab_ports
from waiting import wait_healthy, wait_until

from app.engines.tls import LAB_HOSTS, LabTLS, _generate
from app.lab.commands import settings_host
from app.lab.world import SERVICES

ROOT = Path(__file__).resolve().parent.parent


class LabApp:
    def __init__(self, data: Path) -> None:
        self.offset, self.web = free_lab_ports()
        self.data = data
        env = {
            **os.environ,
            "MAILFLOW_DATA_DIR": str(data),
            "MAILFLOW_PORT": str(self.web),
            "MAILFLOW_LAB_OFFSET": str(self.offset),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.web}"
        wait_healthy(f"{self.base}/healthz", self.proc)

    def port(self, service: str) -> int:
        return next(s.standard_port for s in SERVICES if s.name == service) + self.offset

    def inbox(self) -> list[Path]:
        box = self.data / "lab" / "mail" / "bob@b.example"
        return [p for sub in ("new", "cur") for p in (box / sub).glob("*")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def lab_app(tmp_path: Path) -> Iterator[LabApp]:
    app = LabApp(tmp_path / "data")
    yield app
    app.stop()


@pytest.fixture
def workdir(tmp_path: Path, lab_app: LabApp) -> Path:
    """A folder holding the CA as downloaded from /lab; also the programs' HOME."""
    folder = tmp_path / "work"
    folder.mkdir()
    pem = httpx.get(f"{lab_app.base}/lab/mailflow-ca.pem").content
    (folder / "mailflow-ca.pem").write_bytes(pem)
    return folder


def send(app: LabApp, subject: str) -> None:
    ctx = ssl.create_default_context(cafile=str(app.data / "tls" / "ca.pem"))
    with smtplib.SMTP("localhost", app.port("submission"), timeout=10) as c:
        c.starttls(context=ctx)
        c.login("alice@a.example", "alice-pass")
        c.sendmail("alice@a.example", ["bob@b.example"], f"Subject: {subject}\r\n\r\nHi\r\n")


def wait_for_inbox(app: LabApp, count: int) -> None:
    wait_until(lambda: len(app.inbox()) >= count, f"{count} mail(s) in the inbox")


def from_page(page: str, attribute: str) -> str:
    match = re.search(rf"<code {attribute}>(.*?)</code>", page, re.S)
    assert match, attribute
    return html.unescape(match.group(1))


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(cwd)}  # fetchmail keeps its lock file in HOME
    return subprocess.run(
        command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_fetchmail_settings_from_the_page_fetch_the_mail(lab_app: LabApp, workdir: Path) -> None:
    send(lab_app, "for fetchmail")
    wait_for_inbox(lab_app, 1)
    page = httpx.get(f"{lab_app.base}/lab").text
    rc = from_page(page, 'data-config="fetchmail"')
    assert f"poll localhost protocol POP3 port {lab_app.port('pop3')}" in rc
    (workdir / "mailflow.fetchmailrc").write_text(rc)
    done = run(from_page(page, 'data-cmd="fetchmail-run"'), workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Subject: for fetchmail" in (workdir / "fetched-mail.txt").read_text()
    assert lab_app.inbox() == []  # fetchmail sent DELE and QUIT


def test_mbsync_settings_from_the_page_copy_the_inbox(lab_app: LabApp, workdir: Path) -> None:
    send(lab_app, "for mbsync")
    wait_for_inbox(lab_app, 1)
    page = httpx.get(f"{lab_app.base}/lab").text
    rc = from_page(page, 'data-config="mbsync"')
    assert "Host localhost" in rc and f"Port {lab_app.port('imaps')}" in rc
    (workdir / "mailflow.mbsyncrc").write_text(rc)
    done = run(from_page(page, 'data-cmd="mbsync-run"'), workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    copied = list((workdir / "lab-mail" / "INBOX").glob("*/*"))
    assert len(copied) == 1 and b"Subject: for mbsync" in copied[0].read_bytes()
    assert len(lab_app.inbox()) == 1  # IMAP copies; the server keeps the mail


def test_mail_app_settings_on_the_page_work(lab_app: LabApp, workdir: Path) -> None:
    # Thunderbird cannot run here, so its manual set-up is checked field by field with
    # Python's clients: the server name, the port, SSL/TLS verified against the lab CA
    # (host name checked), and a normal password login.
    page = httpx.get(f"{lab_app.base}/lab?lang=en").text
    rows = {
        proto: html.unescape(re.sub(r"<[^>]+>", "", text))
        for proto, text in re.findall(r'<dd data-app="(\w+)">(.*?)</dd>', page, re.S)
    }
    assert set(rows) == {"IMAP", "POP3", "SMTP"}
    fields = {
        proto: dict(part.split(": ", 1) for part in row.split(" · ")) for proto, row in rows.items()
    }
    ctx = ssl.create_default_context(cafile=str(workdir / "mailflow-ca.pem"))
    for proto, got in fields.items():
        assert got["Connection security"] == "SSL/TLS", proto
        assert got["Authentication method"] == "normal password", proto
        assert got["Server"] == "localhost", proto
    imap = fields["IMAP"]
    with imaplib.IMAP4_SSL(imap["Server"], int(imap["Port"]), ssl_context=ctx) as m:
        assert m.login(imap["Username"], "bob-pass")[0] == "OK"
    pop = fields["POP3"]
    box = poplib.POP3_SSL(pop["Server"], int(pop["Port"]), context=ctx, timeout=10)
    box.user(pop["Username"])
    assert box.pass_("bob-pass").startswith(b"+OK")
    box.quit()
    smtp = fields["SMTP"]
    with smtplib.SMTP_SSL(smtp["Server"], int(smtp["Port"]), context=ctx, timeout=10) as c:
        assert c.login(smtp["Username"], "bob-pass")[0] == 235


def test_settings_use_localhost_on_loopback_and_the_name_given_elsewhere() -> None:
    assert settings_host("127.0.0.1") == "localhost" and settings_host("::1") == "localhost"
    assert settings_host("mail.example.org") == "mail.example.org"


async def test_an_old_certificate_without_localhost_is_made_anew(tmp_path: Path) -> None:
    _generate(tmp_path, hosts=("mail.a.example", "mx.b.example"))  # as an older version did
    tls = LabTLS.load(tmp_path)
    cert = x509.load_pem_x509_certificates(tls.cert_file.read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(LAB_HOSTS) <= set(names.get_values_for_type(x509.DNSName))

    # And a client that checks the name "localhost" accepts it.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls.server_context)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls.client_context, server_hostname="localhost"
    )
    assert await reader.readline() == b"ok\n"
    writer.close()
    server.close()
    await server.wait_closed()

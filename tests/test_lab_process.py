"""Lab mode as a user runs it: `python -m app` in its own process, real ports, kill -9."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served import free_lab_ports
from waiting import wait_healthy, wait_until
from websockets.sync.client import connect

from app.lab.world import SERVICES
from app.world.spool import Spool

ROOT = Path(__file__).resolve().parent.parent


def free_offset() -> tuple[int, int]:
    """An offset whose seven lab ports are free, and a free web port."""
    return free_lab_ports()


class App:
    def __init__(self, data: Path, offset: int, web: int, **env: str) -> None:
        self.data, self.offset, self.web = data, offset, web
        self.env = {
            **os.environ,
            "MAILFLOW_DATA_DIR": str(data),
            "MAILFLOW_PORT": str(web),
            "MAILFLOW_LAB_OFFSET": str(offset),
            **env,
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> App:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(f"http://127.0.0.1:{self.web}/healthz", self.proc)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def port(self, service: str) -> int:
        return next(s.standard_port for s in SERVICES if s.name == service) + self.offset


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    offset, web = free_offset()
    running = App(tmp_path / "data", offset, web).start()
    yield running
    running.stop()


def ca_context(app: App) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(app.data / "tls" / "ca.pem"))


def inbox_files(app: App) -> list[Path]:
    box = app.data / "lab" / "mail" / "bob@b.example"
    return [p for sub in ("new", "cur") for p in (box / sub).glob("*")]


def test_kill_9_right_after_250_loses_nothing(app: App) -> None:
    with smtplib.SMTP("127.0.0.1", app.port("submission"), timeout=10) as c:
        c.starttls(context=ca_context(app))
        c.login("alice@a.example", "alice-pass")
        c.mail("alice@a.example")
        c.rcpt("bob@b.example")
        code, _ = c.data(b"Subject: durable\r\n\r\nstill here\r\n")
        assert code == 250
        app.kill()  # no clean shutdown: whatever the 250 promised must be on disk
    queued = list((app.data / "lab" / "queue").rglob("*.mail"))
    assert queued or inbox_files(app), "the accepted message is neither queued nor delivered"
    app.start()
    queue = app.data / "lab" / "queue"
    wait_until(
        lambda: not list(queue.rglob("*.mail")) and inbox_files(app),
        "the queue to drain into the inbox after the restart",
    )
    # At least once (RFC 5321 §6.1): a crash between the MDA's write and the queue's
    # clean-up may deliver twice, but never zero times.
    copies = inbox_files(app)
    assert len(copies) in (1, 2)
    assert all(b"still here" in c.read_bytes() for c in copies)


def test_a_new_lab_delivers_only_once_the_old_one_let_go_of_the_queue(app: App) -> None:
    """After a kill -9 of the web, its lab process shuts down while a new web starts a new
    one. Before the queue lock, the new lab listed and delivered a queue file the old one
    was still delivering: with the relay hop's own at-least-once copy, three copies of
    one mail (tests/test_lab_process.py's kill -9 test once saw them)."""
    app.stop()
    inbound = Spool(app.data / "lab" / "queue" / "inbound-b")
    old = inbound.put("alice@a.example", ["bob@b.example"], b"Subject: old\r\n\r\nold run\r\n")
    # This test plays the old lab process, still delivering that file (one lock for all
    # the queues: one process works them all).
    owner = os.open(inbound.dir.parent / ".owner", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)
    try:
        app.start()  # the listeners come up at once; delivery waits for the lock
        inbound.remove(old)  # the old process delivered it and took it out of the queue
    finally:
        os.close(owner)  # ... and exited
    with smtplib.SMTP("127.0.0.1", app.port("submission"), timeout=10) as c:
        c.starttls(context=ca_context(app))
        c.login("alice@a.example", "alice-pass")
        c.sendmail("alice@a.example", ["bob@b.example"], "Subject: new\r\n\r\nnew run\r\n")
    copies = wait_until(lambda: inbox_files(app), "the new mail to be delivered")
    # Whatever the new process delivered first: only the new mail, never the old one.
    assert [b"new run" in c.read_bytes() for c in copies] == [True]


def test_lab_page_certificate_mailbox_viewer_and_reset(app: App) -> None:
    base = f"http://127.0.0.1:{app.web}"
    page = httpx.get(f"{base}/lab").text
    for s in SERVICES:
        assert f"127.0.0.1:{app.port(s.name)}" in page
    fingerprint = re.search(r'<code class="fp">([0-9A-F:]+)</code>', page).group(1)
    assert len(fingerprint) == 95
    pem = httpx.get(f"{base}/lab/mailflow-ca.pem").content
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=ca_context(app)) as c:
        c.login("alice@a.example", "alice-pass")
        c.sendmail(
            "alice@a.example",
            ["bob@b.example"],
            "Subject: <script>alert(1)</script>\r\n\r\n<b>bold?</b>\r\n",
        )
    wait_until(lambda: inbox_files(app), "the MDA to write the message")
    listing = httpx.get(f"{base}/lab/mailbox/bob@b.example/INBOX").text
    assert "<script>alert(1)</script>" not in listing and "&lt;script&gt;" in listing
    message = httpx.get(f"{base}/lab/mailbox/bob@b.example/INBOX/1").text
    assert "<b>bold?</b>" not in message and "&lt;b&gt;bold?&lt;/b&gt;" in message
    assert httpx.get(f"{base}/lab/mailbox/nobody@b.example/INBOX").status_code == 404
    # Reset is refused from another site's page (a script sending no Origin may reset).
    assert (
        httpx.post(f"{base}/lab/reset", headers={"Origin": "http://evil.example"}).status_code
        == 403
    )
    assert inbox_files(app)
    r = httpx.post(f"{base}/lab/reset", headers={"Origin": base})
    assert r.status_code == 303 and not inbox_files(app)


def test_live_socket_streams_sessions_and_refuses_bad_messages(app: App) -> None:
    url = f"ws://127.0.0.1:{app.web}/ws/lab"
    with connect(url) as ws:
        ws.send("nonsense")
        assert json.loads(ws.recv())["code"] == "bad_message"
        ws.send(json.dumps({"type": "hello", "lang": "en", "extra": 1}))
        assert json.loads(ws.recv())["code"] == "bad_message"
        ws.send(json.dumps({"type": "hello", "lang": "en"}))
        assert json.loads(ws.recv())["type"] == "recent"
        with socket.create_connection(("127.0.0.1", app.port("pop3")), timeout=5) as s:
            s.recv(200)
            s.sendall(b"USER bob@b.example\r\nPASS bob-pass\r\nQUIT\r\n")
            while s.recv(4096):  # the server closes after QUIT's +OK: the session is over
                pass
        seen = []
        while len(seen) < 5:
            msg = json.loads(ws.recv(timeout=5))
            if msg["type"] == "event":
                seen.append(msg)
        assert seen[0]["event"]["text"].startswith("+OK")
        pass_line = next(m for m in seen if m["event"]["key"] == "pop3.pass")
        # The live view masks secrets in the event itself, not only in its HTML.
        assert "bob-pass" not in pass_line["html"] and "PASS ****" in pass_line["html"]
        assert pass_line["event"]["text"] == "PASS ****"


def test_a_busy_port_is_named_with_the_setting_to_change(tmp_path: Path) -> None:
    offset, web = free_offset()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 110 + offset))
    blocker.listen()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env={
                **os.environ,
                "MAILFLOW_DATA_DIR": str(tmp_path),
                "MAILFLOW_PORT": str(web),
                "MAILFLOW_LAB_OFFSET": str(offset),
            },
        )
    finally:
        blocker.close()
    assert proc.returncode == 2
    assert f"port {110 + offset}" in proc.stderr and "MAILFLOW_LAB_OFFSET" in proc.stderr


def test_a_public_address_needs_explicit_consent(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MAILFLOW_DATA_DIR": str(tmp_path), "MAILFLOW_HOST": "0.0.0.0"},
    )
    assert proc.returncode == 2
    assert "MAILFLOW_PUBLIC=1" in proc.stderr and "alice-pass" in proc.stderr

"""The process layout: the web never runs a mail server; the lab is one process of its own.

`python -m app` as a user starts it; sockets and processes are read from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from test_lab_process import ROOT, App, ca_context, free_offset, inbox_files
from waiting import wait_until
from websockets.sync.client import connect

from app.lab.world import SERVICES


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces; the fields after its ")" are fixed.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    """The process's command line; "" once it has exited (a killed lab process, an idle
    recording worker) between being listed and being read."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def lab_pid(web: int) -> int | None:
    found = [p for p in children(web) if "app.lab.process" in cmdline(p)]
    return found[0] if found else None


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state on sockets this process holds (/proc/net/tcp inodes
    matched against the process's open files)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # it has exited since it was found
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    offset, web = free_offset()
    running = App(tmp_path / "data", offset, web).start()
    yield running
    running.stop()


def lab_ports(app: App) -> set[int]:
    return {app.port(s.name) for s in SERVICES}


def test_the_web_process_holds_no_mail_listener(app: App) -> None:
    assert app.proc is not None
    web = app.proc.pid
    lab = lab_pid(web)
    assert lab is not None, "no lab process under the web process"
    assert listening_ports(web) == {app.web}
    assert lab_ports(app) <= listening_ports(lab)
    # The MX and MDA hops run inside the lab process: it has no child of its own.
    assert children(lab) == []


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_first_start_leaves_no_certificate_library_in_any_process(app: App) -> None:
    """The fixture's data directory is new: certificates and database were made by the
    short-lived `app.prepare` process, so no long-lived one keeps `cryptography`'s
    native library (its Rust extension) mapped."""
    assert app.proc is not None
    assert (app.data / "tls" / "ca.pem").exists() and (app.data / "mailflow.db").exists()
    lab = lab_pid(app.proc.pid)
    assert lab is not None
    for pid in (app.proc.pid, lab):
        assert "cryptography" not in mapped_files(pid), cmdline(pid)


def test_the_lab_process_never_imports_the_web_stack() -> None:
    probe = (
        "import sys, app.lab.process; "
        "print([m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'jinja2', 'sqlalchemy', 'alembic', 'cryptography')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_killed_lab_restarts_delivers_what_it_accepted_and_streams_again(app: App) -> None:
    assert app.proc is not None
    web = app.proc.pid
    first = lab_pid(web)
    assert first is not None
    with smtplib.SMTP("127.0.0.1", app.port("submission"), timeout=10) as c:
        c.starttls(context=ca_context(app))
        c.login("alice@a.example", "alice-pass")
        c.mail("alice@a.example")
        c.rcpt("bob@b.example")
        code, _ = c.data(b"Subject: across\r\n\r\naccepted before the kill\r\n")
        assert code == 250
        os.kill(first, signal.SIGKILL)  # the lab process, not the web
    # The web restarts it: a new lab process holding every lab port again.
    second = wait_until(
        lambda: (p := lab_pid(web)) and p != first and lab_ports(app) <= listening_ports(p) and p,
        "a new lab process on the lab ports",
    )
    assert listening_ports(web) == {app.web}

    def health() -> dict:
        return httpx.get(f"http://127.0.0.1:{app.web}/healthz", timeout=10).json()

    # Serving once the new process said its listeners are up (just after they listen).
    lab = wait_until(lambda: (h := health())["lab"]["serving"] and h["lab"], "the lab serving")
    assert lab == {"serving": True, "starts": 2}
    copies = wait_until(lambda: inbox_files(app), "the mail accepted before the kill")
    assert all(b"accepted before the kill" in c.read_bytes() for c in copies)
    queue = app.data / "lab" / "queue"
    wait_until(lambda: not list(queue.rglob("*.mail")), "the queues to drain")
    # Events of the new lab process reach the live view of the same web process.
    with connect(f"ws://127.0.0.1:{app.web}/ws/lab") as ws:
        ws.send(json.dumps({"type": "hello", "lang": "en"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "recent"
        with socket.create_connection(("127.0.0.1", app.port("pop3")), timeout=5) as s:
            greeting = s.recv(200)
            s.sendall(b"QUIT\r\n")
            s.recv(200)
        while True:
            msg = json.loads(ws.recv(timeout=10))
            if msg["type"] == "event" and msg["event"]["protocol"] == "POP3":
                break
    assert msg["event"]["text"] == greeting.decode().rstrip("\r\n")
    assert msg["event"]["session"].startswith("r2-")  # numbered apart from the first run
    assert second == lab_pid(web)


START_PROBE = """
import sys
from pathlib import Path
from app.config import Settings
from app.engines.tls import LabTLS
from app.study.setup import init_study
import app.web.app
data = Path(sys.argv[1])
LabTLS.load(data / "tls")
init_study(Settings(data_dir=data, lab=False))
print(sorted(m for m in ("cryptography", "alembic", "dkim", "pyzipper") if m in sys.modules))
"""


def test_a_start_with_made_certificates_and_a_current_database_skips_heavy_imports(
    tmp_path: Path,
) -> None:
    """What the web process needs only the first time (making certificates, migrating
    the database) or only for some scenarios (DKIM, S/MIME, ZIP) is not imported at start:
    each costs several MB in a process that lives as long as the app."""

    def start() -> str:
        out = subprocess.run(
            [sys.executable, "-c", START_PROBE, str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    # The first start makes the certificates; the database is migrated by a process of its
    # own (app.study.migrate), so Alembic is not imported here even then.
    assert start() == "['cryptography']"
    assert start() == "[]"


def test_a_lab_process_that_hangs_costs_the_viewer_a_503_not_a_hung_page(app: App) -> None:
    assert app.proc is not None
    lab = lab_pid(app.proc.pid)
    assert lab is not None
    base = f"http://127.0.0.1:{app.web}"
    assert httpx.get(f"{base}/lab/mailbox/bob@b.example/INBOX", timeout=30).status_code == 200
    os.kill(lab, signal.SIGSTOP)  # alive but answering nothing
    try:
        with ThreadPoolExecutor(1) as pool:
            hung = pool.submit(httpx.get, f"{base}/lab/mailbox/bob@b.example/INBOX", timeout=30)
            # While that request waits on the lab, the rest of the web serves as ever.
            assert httpx.get(f"{base}/flow", timeout=30).status_code == 200
            assert not hung.done()
            assert hung.result().status_code == 503
    finally:
        os.kill(lab, signal.SIGCONT)
    assert httpx.get(f"{base}/lab/mailbox/bob@b.example/INBOX", timeout=30).status_code == 200


def test_the_lab_processes_run_on_uvloop(app: App) -> None:
    """uvloop's event loop and TLS layer (app/lab/child.py): its compiled loop module is
    mapped in every lab process; only `run_main` imports uvloop there."""
    assert app.proc is not None
    lab = lab_pid(app.proc.pid)
    assert lab is not None
    labs = [p for p in (lab, *children(lab)) if "app.lab." in cmdline(p)]
    assert labs
    for pid in labs:
        assert "uvloop/loop." in mapped_files(pid), cmdline(pid)

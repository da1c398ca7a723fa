"""The real app with chosen settings, served by uvicorn on a loopback port in a thread."""

from __future__ import annotations

import os
import random
import smtplib
import socket
import ssl
import threading
from dataclasses import replace
from pathlib import Path

import uvicorn
from waiting import wait_started, wait_until

from app.config import Settings
from app.lab.world import SERVICES
from app.web.app import create_app
from app.web.serving import uvicorn_config


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Lab offsets are picked so that every lab port (offset + 25 … offset + 995) and the web
# port (offset + 8000) lie below Linux's ephemeral range (32768–60999), where a port
# found free cannot be taken meanwhile as the local end of some other connection; and
# each test worker (pytest-xdist) has a block of its own, whose lab and web ports no
# other worker's can meet, so two apps starting at once on two workers cannot pick the
# same port either. A worker's own apps start one after the other and see each other's
# ports taken.
OFFSET_BLOCKS = (range(20000, 21000), range(22000, 23000), range(24000, 24700))


def _offsets() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1", …
    return OFFSET_BLOCKS[int(worker.removeprefix("gw") or 0) % len(OFFSET_BLOCKS)]


def free_lab_ports() -> tuple[int, int]:
    """An offset whose seven lab ports are all free on loopback, and a free web port."""
    offsets = _offsets()
    for _ in range(200):
        offset = random.choice(offsets)
        web = offset + 8000
        if all(_port_free(s.standard_port + offset) for s in SERVICES) and _port_free(web):
            return offset, web
    raise RuntimeError("no free lab ports")


def free_lab_offset() -> int:
    return free_lab_ports()[0]


class Served:
    def __init__(self, data_dir: Path, **overrides: object) -> None:
        base = Settings(data_dir=data_dir, port=0, lab=False)
        if overrides.get("lab") and "lab_offset" not in overrides:
            overrides["lab_offset"] = free_lab_offset()
        self.settings = replace(base, **overrides)  # type: ignore[arg-type]
        self.app = create_app(self.settings)
        config = uvicorn_config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self) -> Served:
        self.thread.start()
        self.url = f"http://127.0.0.1:{wait_started(self.server, self.thread)}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def inbox_files(s: Served) -> list[Path]:
    box = s.settings.data_dir / "lab" / "mail" / "bob@b.example"
    return [p for sub in ("new", "cur") for p in (box / sub).glob("*")]


def send_one(s: Served, subject: str = "hello") -> None:
    """A real submission over implicit TLS; returns once the MDA has written the file."""
    before = len(inbox_files(s))
    ctx = ssl.create_default_context(cafile=str(s.settings.data_dir / "tls" / "ca.pem"))
    port = s.app.state.lab.ports["submissions"]
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10) as c:
        c.login("alice@a.example", "alice-pass")
        c.sendmail("alice@a.example", ["bob@b.example"], f"Subject: {subject}\r\n\r\nhi\r\n")
    wait_until(lambda: len(inbox_files(s)) > before, "the MDA to write the message")

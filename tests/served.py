"""The real app with chosen settings, served by uvicorn on a loopback port in a thread."""

from __future__ import annotations

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


def free_lab_offset() -> int:
    """An offset whose seven lab ports are all free on loopback."""
    for _ in range(200):
        offset = random.randrange(20000, 50000)
        if all(_port_free(s.standard_port + offset) for s in SERVICES):
            return offset
    raise RuntimeError("no free lab ports")


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

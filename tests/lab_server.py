"""The real app with the lab listeners on, served by uvicorn in a thread on free ports."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

import uvicorn

from app.config import Settings
from app.lab.world import SERVICES
from app.web.app import create_app


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_lab_offset() -> int:
    for _ in range(200):
        offset = random.randrange(20000, 50000)
        if all(_free(s.standard_port + offset) for s in SERVICES):
            return offset
    raise RuntimeError("no free lab ports")


class LabServer:
    def __init__(self, data_dir: Path, accounts_toml: str | None = None) -> None:
        if accounts_toml is not None:
            (data_dir / "lab").mkdir(parents=True, exist_ok=True)
            (data_dir / "lab" / "accounts.toml").write_text(accounts_toml, "utf-8")
        self.settings = Settings(data_dir=data_dir, port=0, lab=True, lab_offset=free_lab_offset())
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self) -> LabServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/lab"

    def port(self, service: str) -> int:
        return self.app.state.lab.ports[service]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

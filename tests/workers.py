"""`python -m app` with MAILFLOW_WEB_WORKERS=N and Redis, as a deployment runs it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class Workers:
    def __init__(self, data_dir: Path, redis_url: str, count: int = 2, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "MAILFLOW_PORT": str(self.port),
            "MAILFLOW_DATA_DIR": str(data_dir),
            "MAILFLOW_WEB_WORKERS": str(count),
            "MAILFLOW_REDIS_URL": redis_url,
            "MAILFLOW_LAB": "0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=environ,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        # Each worker says so when it is ready; wait for all of them, not for a time.
        started = 0
        seen = []
        while started < count:
            line = self.lines.get(timeout=120)
            seen.append(line)
            if line == "":
                raise RuntimeError("the workers did not start:\n" + "".join(seen))
            if "Application startup complete" in line:
                started += 1

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

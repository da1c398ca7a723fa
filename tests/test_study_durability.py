"""An answer is committed before its response: kill -9 the server, start it again on the same
data directory and database, and the learner's progress is still there (SQLite and
PostgreSQL)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from waiting import wait_healthy

ROOT = Path(__file__).resolve().parent.parent


def _serve(data_dir: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "MAILFLOW_DATA_DIR": str(data_dir),
        "MAILFLOW_LAB": "0",
        "MAILFLOW_DATABASE_URL": database_url,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.web.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{base}/api/me/progress", proc)
    except BaseException:
        proc.kill()
        raise
    return proc, base


def test_progress_survives_kill_9(tmp_path: Path, database_url: str) -> None:
    proc, base = _serve(tmp_path, database_url)
    try:
        with httpx.Client(base_url=base) as c:
            for _ in range(3):
                page = c.get("/quiz/ports").text
                token = re.search(r'name="token" value="([^"]+)"', page).group(1)
                options = re.findall(r'name="answer" value="(\d+)"', page)
                r = c.post(
                    "/quiz/ports/answer",
                    data={"token": token, "answer": options[0] if options else "25"},
                )
                assert r.status_code == 200
            cookie = c.cookies["mf_learner"]
            assert c.get("/api/me/progress").json()["answered"] == 3
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: only what was committed
        proc.wait(timeout=10)
    proc, base = _serve(tmp_path, database_url)
    try:
        r = httpx.get(f"{base}/api/me/progress", cookies={"mf_learner": cookie})
        assert r.json()["answered"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)

"""What the web process imports to start: none of what runs mail.

The web never runs a mail server or a scenario (the lab process and the recording worker
do), so importing the engines, the sandbox, the scenario runner, aiosmtpd or aiosmtplib
there would only cost memory in the process that lives longest (about 7 MB together).
httpx (forwarding to the lab with several web workers) and segno (a room's QR code) are
imported when first used. The sans-IO protocol cores are allowed: the prediction game
replays commands against them. `app.engines.tls` is allowed too: it is the certificate
store (the `ssl` module; `cryptography` only to make certificates), no server.

Checked in a fresh interpreter that does what `python -m app` does before it serves:
the data directory made by `python -m app.prepare`, then import the web stack, build
the app and run its start-up (lab off: the lab process imports the engines in a process
of its own, which is the point).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

START = """
import asyncio, json, sys
from pathlib import Path
import app.__main__, uvicorn
from app.config import Settings
from app.web.app import create_app

app = create_app(Settings(data_dir=Path(sys.argv[1]), lab=False, record_pool=0))

async def start() -> None:
    async with app.router.lifespan_context(app):
        await app.state.health.check()  # the start-up probe, answered

asyncio.run(start())
print(json.dumps(sorted(sys.modules)))
"""

FORBIDDEN = (
    "app.sandbox",
    "app.scenarios.runner",
    "app.scenarios.actions",
    "app.lab.world",
    "app.lab.stages",
    "app.world.world",
    "aiosmtpd",
    "aiosmtplib",
    "httpx",
    "segno",
    "alembic",
    "sqlalchemy",  # the study store runs on sqlite3/psycopg; migrations in their own process
    "psycopg",  # only when the study database is PostgreSQL
)


def test_the_web_start_imports_no_engine_and_no_mail_library(tmp_path: Path) -> None:
    env = {**os.environ, "MAILFLOW_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "app.prepare"], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-c", START, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    assert "app.web.app" in modules
    engines = [m for m in modules if m.startswith("app.engines.") and m != "app.engines.tls"]
    assert engines == []
    loaded = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == []

"""The web process serves every study route without importing SQLAlchemy or Alembic.

SQLAlchemy alone is about 15 MiB of the web's RSS (docs/architecture.md, "The learner
database"): the store runs on sqlite3/psycopg, and the schema is migrated by a process of
its own. Checked in a fresh interpreter that serves the real app under uvicorn on loopback
and is driven over HTTP by a real client: a port question answered, a speed round, an
exam started and answered, progress exported and imported into another browser; then its
sys.modules is looked at. On the default SQLite file (a new data directory, so its first
start migrates) and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVE_AND_DRIVE = r"""
import json, re, socket, sys, threading
import httpx, uvicorn
from app.config import Settings
from app.web.app import create_app

app = create_app(Settings.from_env())
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
base = f"http://127.0.0.1:{sock.getsockname()[1]}"
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()  # the first request waits in the listening socket's backlog until it serves

def field(name, page):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    assert m, page[:500]
    return m.group(1)

def pick(page):
    # A new learner's questions (and every speed round's) are multiple choice.
    options = re.findall(r'name="answer" value="([^"]+)"', page)
    assert options, page[:500]
    return {"token": field("token", page), "answer": options[0]}

seen = {}
with httpx.Client(base_url=base, timeout=60) as c:
    page = c.get("/quiz/ports").text
    r = c.post("/quiz/ports/answer", data=pick(page))
    assert r.status_code == 200, r.text[:300]

    run = c.post("/quiz/speed/start", follow_redirects=False).headers["location"]
    page = c.get(run).text
    r = c.post(f"{run}/answer", data=pick(page))
    assert r.status_code == 200, r.text[:300]

    started = c.post("/quiz/exam/start", data={"mode": "mini"}, follow_redirects=False)
    run = started.headers["location"]
    page = c.get(run).text
    data = {"position": field("position", page), "question": field("question", page), "choice": "1"}
    assert c.post(f"{run}/answer", data=data).status_code == 200
    assert "第 2 問" in c.get(run).text

    seen["before"] = c.get("/api/me/progress").json()
    exported = c.get("/me/export")
    assert exported.status_code == 200
    seen["exported"] = exported.json()

with httpx.Client(base_url=base, timeout=60) as other:  # another browser, a new learner
    upload = {"file": ("p.json", exported.content)}
    r = other.post("/me/import", files=upload, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    seen["after"] = other.get("/api/me/progress").json()
    assert other.get("/quiz/stats").status_code == 200
    assert other.get("/me").status_code == 200

server.should_exit = True
thread.join()
seen["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic"))
print(json.dumps(seen))
"""


def test_the_study_routes_run_without_sqlalchemy(tmp_path: Path, database_url: str) -> None:
    env = {**os.environ, "MAILFLOW_DATA_DIR": str(tmp_path / "data"), "MAILFLOW_LAB": "0"}
    env.pop("MAILFLOW_DATABASE_URL", None)
    if database_url.startswith("postgresql"):
        env["MAILFLOW_DATABASE_URL"] = database_url  # else the data directory's default file
    out = subprocess.run(
        [sys.executable, "-c", SERVE_AND_DRIVE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["modules"] == []
    assert seen["before"]["answered"] == 3 and seen["before"]["due"] == 6, seen
    assert seen["after"]["answered"] == 3  # everything came across to the other browser
    exported = seen["exported"]
    assert [a["mode"] for a in exported["answers"]] == ["srs", "speed", "exam"]
    assert len(exported["cards"]) == 1 and len(exported["speed_runs"]) == 1
    assert len(exported["exam_runs"]) == 1 and len(exported["exam_runs"][0]["answers"]) == 1
    if database_url.startswith("sqlite"):
        assert (tmp_path / "data" / "mailflow.db").exists()

"""The event loop never waits on the learner database (docs/architecture.md, "The learner
database"): a study request stuck behind a database lock stalls no other request.

A real app under uvicorn on loopback, a real SQLite file or PostgreSQL database, and a real
lock held by another connection. The order is shown by events: the answer's transaction has
reached the lock (the store's statement trace: its BEGIN IMMEDIATE on SQLite, its INSERT
on PostgreSQL) before /healthz and /flow are asked, and it can only finish after the lock is
let go.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import uvicorn

from app.config import Settings
from app.study.dburl import parse
from app.web.app import create_app

# Only turns a stalled loop into a failure instead of a hang; every wait below ends on the
# reply or event it waits for.
STALLED = 20.0


class AppThread:
    """The app under uvicorn in a thread, on a socket bound (and listening) before it starts,
    so the first request simply waits in the backlog until the app is up."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> AppThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()


@contextmanager
def learner_table_locked(url: str) -> Iterator[None]:
    """Another connection, not the app's, holds the lock a new learner's answer needs."""
    parsed = parse(url)
    if parsed.path is not None:
        conn = sqlite3.connect(parsed.path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # SQLite's write lock on the whole file
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    with psycopg.connect(**parsed.connect) as pg:
        pg.execute("LOCK TABLE learner IN EXCLUSIVE MODE")  # inserts wait, reads do not
        yield
        pg.rollback()


def _question(c: httpx.Client) -> dict[str, str]:
    page = c.get("/quiz/ports").text
    token = re.search(r'name="token" value="([^"]+)"', page)
    options = re.findall(r'name="answer" value="(\d+)"', page)
    assert token, page[:300]
    return {"token": token.group(1), "answer": options[0] if options else "25"}


def test_a_study_request_waiting_on_the_database_stalls_nothing_else(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(data_dir=tmp_path, lab=False, database_url=database_url)
    with AppThread(settings) as served, httpx.Client(base_url=served.base, timeout=STALLED) as c:
        form = _question(c)
        reached = threading.Event()

        def spot(statement: str) -> None:
            # Where the answer meets the other connection's lock: SQLite's write lock is
            # taken by BEGIN IMMEDIATE, PostgreSQL's table lock by the learner INSERT.
            if statement.startswith(("BEGIN IMMEDIATE", "INSERT INTO learner")):
                reached.set()

        served.app.state.study.db.trace = spot
        answered: dict[str, httpx.Response] = {}

        def answer() -> None:
            with httpx.Client(base_url=served.base, timeout=STALLED * 3) as learner:
                answered["reply"] = learner.post("/quiz/ports/answer", data=form)

        with learner_table_locked(database_url):
            waiting = threading.Thread(target=answer)
            waiting.start()
            assert reached.wait(STALLED), "the answer never reached the database"
            # That answer now waits on the lock. Everyone else is still served.
            assert c.get("/healthz").status_code == 200
            assert c.get("/flow").status_code == 200
            assert c.get("/quiz/ports").status_code == 200  # another learner's study page
            assert "reply" not in answered  # it cannot have finished: the lock is still held
        waiting.join()
        reply = answered["reply"]
        assert reply.status_code == 200, reply.text[:300]
        cookies = {"mf_learner": reply.cookies["mf_learner"]}
        with httpx.Client(base_url=served.base, cookies=cookies) as learner:
            assert learner.get("/api/me/progress").json()["answered"] == 1

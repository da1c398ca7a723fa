"""Engine, sessions and migrations of the study database.

SQLite is the default: WAL so readers never wait for the writer, synchronous=NORMAL
(a committed answer survives kill -9; only a power cut may lose the last moment), and
writes serialised in-process so threads queue on a lock instead of SQLite's busy-wait
back-off, which would otherwise dominate the latency tail.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def private_sqlite_file(path: Path) -> None:
    """Create the database file owner-only (0600), and tighten one that exists.

    It holds the cookie signing key: anyone who can read it can sign in as any learner.
    SQLite gives its -wal and -shm files the database file's mode when it creates them;
    ones left from an earlier, looser run are tightened too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        private_sqlite_file(Path(parsed.database))
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def _head_revision() -> str | None:
    """The newest revision in migrations/versions (the one no other revision follows),
    read from the files, so a database already at it costs no Alembic import."""
    revisions, follows = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text("utf-8")
        if rev := re.search(r'^revision = "([^"]+)"', source, re.M):
            revisions.add(rev.group(1))
        if down := re.search(r'^down_revision = "([^"]+)"', source, re.M):
            follows.add(down.group(1))
    heads = revisions - follows
    return heads.pop() if len(heads) == 1 else None


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (from empty on a fresh database)."""
    head = _head_revision()
    if head is not None and _current_revision(engine) == head:
        return  # up to date: Alembic (about 11 MB) is not even imported
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        # Only SQLite needs the writer lock; server databases handle concurrent writers.
        self._write_lock: threading.Lock | None = (
            threading.Lock() if engine.dialect.name == "sqlite" else None
        )
        self.inline = engine.dialect.name == "sqlite"

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a request's blocking part: inline for SQLite, in the thread pool otherwise.

        A SQLite answer is well under a millisecond of local work; handing it to a thread
        costs more than that and, with dozens of threads fighting for the GIL, stretches the
        latency tail. A database across the network must not block the event loop.
        """
        if self.inline:
            return fn(*args)
        return await run_in_threadpool(fn, *args)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that is committed before the block's caller goes on."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.sessions() as session, session.begin():
                yield session
        finally:
            if lock is not None:
                lock.release()

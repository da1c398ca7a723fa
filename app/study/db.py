"""Engine, sessions, migrations and the one async path to the study database.

Every request that reads or writes learner progress goes through `Database.call`: the work
runs on the database's own small thread pool and the route awaits it. So the event loop
never waits on the database: not on SQLite's file lock held by another process, not on the
in-process writer lock held by another request, not on a PostgreSQL row lock or round trip.

SQLite is the default: WAL so readers never wait for the writer, synchronous=NORMAL
(a committed answer survives kill -9; only a power cut may lose the last moment), and
writes serialised in-process so the database threads queue on a lock instead of SQLite's
busy-wait back-off, which would otherwise dominate the latency tail. PostgreSQL
(`postgresql+psycopg://…`) takes concurrent writers itself; the store's statements that
could race there are written to be safe under concurrency (see hot_sql.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from app.study import hot_sql

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Threads that run database work. SQLite: readers run side by side (WAL), writers queue on
# the in-process lock; more threads would only fight over the GIL. PostgreSQL: one pooled
# connection per thread, so a slow query holds one thread, not the loop.
SQLITE_THREADS = 4
SERVER_THREADS = 10
# Any fixed number: the PostgreSQL advisory lock that lets one process at a time migrate.
MIGRATION_LOCK = 0x4D46_4C01


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
    if parsed.get_backend_name() == "postgresql":
        # UTC sessions: timestamps come back in UTC whatever the server's TimeZone says, so
        # an export reads the same from either database.
        args = {"options": "-c timezone=UTC"} if parsed.get_driver_name() == "psycopg" else {}
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=SERVER_THREADS,
            max_overflow=5,
            connect_args=args,
        )
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
    # The Config is a ConfigParser: a "%" in the URL (an escaped socket path or password)
    # must be doubled to survive its interpolation.
    url = engine.url.render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several workers may start at once on one database: the first migrates inside
            # this transaction (PostgreSQL's DDL is transactional), the others wait here and
            # then find the schema at head.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    def __init__(self, engine: Engine, threads: int | None = None) -> None:
        self.engine = engine
        self.sql = hot_sql.statements(engine.dialect.name)
        sqlite = engine.dialect.name == "sqlite"
        # Only SQLite needs the writer lock; server databases handle concurrent writers.
        self._write_lock: threading.Lock | None = threading.Lock() if sqlite else None
        self._threads = ThreadPoolExecutor(
            max_workers=threads or (SQLITE_THREADS if sqlite else SERVER_THREADS),
            thread_name_prefix="study-db",
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking database work (and whatever it renders) on the database threads.

        The only way a request reaches the store. The caller's context variables (the page
        language) go along. A request whose client goes away still finishes its work, so a
        write is either committed or never started.
        """
        loop = asyncio.get_running_loop()
        work = functools.partial(contextvars.copy_context().run, fn, *args)
        return await loop.run_in_executor(self._threads, work)

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self.engine.dispose()

    # Connections of SQLAlchemy Core, not ORM sessions: the store reads rows and writes
    # with statements, and the web process does without the ORM (models.py).
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection whose transaction is rolled back at the end (reads only)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that is committed before the block's caller goes on."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

"""Connections, transactions and the one async path to the study database.

Every request that reads or writes learner progress goes through `Database.call`: the work
runs on the database's own small thread pool and the route awaits it. So the event loop
never waits on the database: not on SQLite's file lock held by another process, not on the
in-process writer lock held by another request, not on a PostgreSQL row lock or round trip.

Straight on the DB-API drivers (stdlib sqlite3, psycopg), not SQLAlchemy: importing
SQLAlchemy costs the web process about 15 MiB of RSS, a tenth of the whole app's memory
target (docs/architecture.md, "The learner database"). Each database thread keeps one
connection of its own (a thread-local), which is all the pooling the fixed thread pool needs.

SQLite is the default: WAL so readers never wait for the writer, synchronous=NORMAL
(a committed answer survives kill -9; only a power cut may lose the last moment), and
writes serialised in-process so the database threads queue on a lock instead of SQLite's
busy-wait back-off, which would otherwise dominate the latency tail. PostgreSQL
(`postgresql+psycopg://…`) takes concurrent writers itself; the store's statements that
could race there are written to be safe under concurrency (see dialect.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from app.study.dburl import DatabaseUrl, parse
from app.study.dialect import Dialect, dialect_for

T = TypeVar("T")
# A row: a named tuple, attributes named as the columns (or their aliases).
Row = Any

# Threads that run database work. SQLite: readers run side by side (WAL), writers queue on
# the in-process lock; more threads would only fight over the GIL. PostgreSQL: one
# connection per thread, so a slow query holds one thread, not the loop.
SQLITE_THREADS = 4
SERVER_THREADS = 10


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


class Tx:
    """One transaction on one connection: what `Database.read()` and `write()` yield."""

    __slots__ = ("_db", "_dialect", "_started", "_trace", "conn")

    def __init__(self, db: Database, conn: Any) -> None:
        self._db = db
        self._dialect = db.dialect
        self._trace = db.trace
        self._started = False  # nothing sent yet in this transaction
        self.conn = conn

    @property
    def for_update(self) -> str:
        """The row-lock suffix: "FOR UPDATE" on PostgreSQL, empty on SQLite (dialect.py)."""
        return self._dialect.for_update

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement; the cursor (fetchone/fetchall/iteration) comes back."""
        if self._trace is not None:
            self._trace(sql)
        d = self._dialect
        text, values = d.sql(sql), d.params(params) if params else ()
        if self._started:
            return self.conn.execute(text, values)
        self._started = True
        try:
            return self.conn.execute(text, values)
        except d.connection_lost:
            # What SQLAlchemy's pool_pre_ping was for, without a round trip per request: a
            # PostgreSQL connection the server dropped unseen (a restart, an idle timeout)
            # fails at the transaction's first statement; nothing was done in it yet, so it
            # is sent again on a new connection. Any other failure is the caller's.
            if d.usable(self.conn):
                raise
            self.conn = self._db._reconnect()
            return self.conn.execute(text, values)

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._trace is not None:
            self._trace(sql)
        d = self._dialect
        self._started = True
        cursor = self.conn.cursor()  # sqlite3's cursor is no context manager
        try:
            cursor.executemany(d.sql(sql), [d.params(r) for r in rows])
        finally:
            cursor.close()

    def first(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return list(self.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]


class Database:
    def __init__(self, url: str | DatabaseUrl, threads: int | None = None) -> None:
        self.url = parse(url) if isinstance(url, str) else url
        self.dialect: Dialect = dialect_for(self.url)
        self.kind = self.dialect.kind  # "sqlite" | "postgresql"
        sqlite = self.kind == "sqlite"
        if sqlite and self.url.path is not None:
            private_sqlite_file(self.url.path)
        # Only SQLite needs the writer lock; server databases handle concurrent writers.
        self._write_lock: threading.Lock | None = threading.Lock() if sqlite else None
        self._threads = ThreadPoolExecutor(
            max_workers=threads or (SQLITE_THREADS if sqlite else SERVER_THREADS),
            thread_name_prefix="study-db",
        )
        self._local = threading.local()
        self._open: dict[threading.Thread, Any] = {}  # every thread's connection, to close
        self._open_lock = threading.Lock()
        # Sees each statement before it runs (tests wait on it to know where a request is).
        self.trace: Callable[[str], None] | None = None

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
        with self._open_lock:
            conns, self._open = list(self._open.values()), {}
        for conn in conns:
            conn.close()

    def _connection(self) -> Any:
        """This thread's connection, opened here (or again, if the old one is gone)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self.dialect.usable(conn):
            return conn
        return self._reconnect()

    def _reconnect(self) -> Any:
        old = getattr(self._local, "conn", None)
        if old is not None:
            old.close()
        conn = self._local.conn = self.dialect.connect()
        me = threading.current_thread()
        with self._open_lock:
            # Connections of threads that have ended (a test's, a one-off's) go here.
            for gone in [t for t in self._open if t is not me and not t.is_alive()]:
                self._open.pop(gone).close()
            self._open[me] = conn
        return conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        tx = Tx(self, self._connection())
        begin = self.dialect.begin(write)
        if begin is not None:
            tx.execute(begin)
        try:
            yield tx
            if write:
                self.dialect.commit(tx.conn)
            else:
                self.dialect.rollback(tx.conn)  # a read leaves nothing to keep
        except BaseException:
            self._abandon(tx.conn)
            raise

    def _abandon(self, conn: Any) -> None:
        """Roll back after an error; a connection that cannot even do that is dropped."""
        try:
            self.dialect.rollback(conn)
        except Exception:
            conn.close()
            self._local.conn = None

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A transaction that is rolled back at the end (reads only)."""
        with self._transaction(write=False) as tx:
            yield tx

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A transaction that is committed before the block's caller goes on."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self._transaction(write=True) as tx:
                yield tx
        finally:
            if lock is not None:
                lock.release()

"""Where SQLite and PostgreSQL differ, in one place; the store's SQL is written once.

The store writes portable SQL with `:name` parameters. What differs is kept here:
- parameters: sqlite3 takes `:name` as written; psycopg wants `%(name)s` (translated once
  per statement text and cached).
- row locks: `SELECT … FOR UPDATE` on PostgreSQL, where two requests write at once (the
  learner's row, so two answers of one learner update the FSRS card one after the other;
  a speed run's row, so two answers at once each add to its score). SQLite has no row
  locks and needs none: its writers are serialised (db.Database's writer lock).
- "insert unless there" is the same text in both, `INSERT … ON CONFLICT (…) DO NOTHING`
  (SQLite 3.35+ for the RETURNING that says whether it did): a check-then-insert would
  race on PostgreSQL (a double click sends the same answer twice) and the loser's unique
  violation would abort its transaction.
- values: SQLite has no date type. The tables were written through SQLAlchemy, whose SQLite
  DateTime is the text "YYYY-MM-DD HH:MM:SS.ffffff" (UTC here; no zone) and whose Boolean
  is 0/1. Written and read back the same way here, so either code reads the other's rows;
  PostgreSQL (timestamptz in a UTC session, boolean) needs no conversion.
- transactions: explicit BEGIN (BEGIN IMMEDIATE to write) on SQLite, whose module runs
  with isolation_level=None; psycopg opens one itself at the first statement.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from app.study.dburl import DatabaseUrl

# Columns of these names hold date-times and booleans in every table (models.py); a test
# checks the lists against the tables, so a new column cannot be missed.
DATETIME_COLUMNS = frozenset({"created_at", "at", "due", "last_review", "started_at"})
BOOLEAN_COLUMNS = frozenset({"correct"})
SQLITE_BUSY_MS = 30_000  # another process (a second worker, a migration) holding the file


def sqlite_time(dt: datetime) -> str:
    """SQLAlchemy's SQLite DateTime storage format, from a UTC (or aware) datetime."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}"
    )


def _read_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text)  # as SQLAlchemy reads it
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@functools.lru_cache(maxsize=512)
def _shape(names: tuple[str, ...]) -> tuple[Any, tuple[Callable[[Any], Any] | None, ...]]:
    """A named-tuple class for rows of these columns, and each column's converter."""
    row = namedtuple("Row", names, rename=True)  # type: ignore[misc]  # "1" becomes _0
    convert = tuple(
        _read_time if n in DATETIME_COLUMNS else bool if n in BOOLEAN_COLUMNS else None
        for n in names
    )
    return row, convert


def _sqlite_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    row, convert = _shape(tuple(d[0] for d in cursor.description))
    return row._make(
        [v if c is None or v is None else c(v) for c, v in zip(convert, values, strict=True)]
    )


class SqliteDialect:
    kind = "sqlite"
    connection_lost: tuple[type[Exception], ...] = ()  # a file: nothing to lose
    has_table = "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = :name"
    for_update = ""  # writers are serialised in process; SQLite has no row locks
    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, url: DatabaseUrl) -> None:
        assert url.path is not None
        self.path = url.path

    def connect(self) -> sqlite3.Connection:
        # check_same_thread off only so that close() may run on another thread; each
        # connection is used by the one database thread that opened it.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=SQLITE_BUSY_MS / 1000
        )
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        conn.execute("PRAGMA synchronous=NORMAL")  # a commit survives kill -9, not a power cut
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        conn.row_factory = _sqlite_row
        return conn

    def sql(self, text: str) -> str:
        return text

    @staticmethod
    def params(values: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: sqlite_time(v) if isinstance(v, datetime) else v for k, v in values.items()}

    @staticmethod
    def begin(write: bool) -> str | None:
        # IMMEDIATE takes the file's write lock first: a write that reads before it writes
        # cannot fail to upgrade its lock against another process's writer.
        return "BEGIN IMMEDIATE" if write else "BEGIN"

    @staticmethod
    def commit(conn: Any) -> None:
        conn.execute("COMMIT")

    @staticmethod
    def rollback(conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    @staticmethod
    def usable(conn: Any) -> bool:
        return True


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


class PostgresDialect:
    kind = "postgresql"
    has_table = (
        "SELECT 1 AS found FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = :name"
    )
    for_update = " FOR UPDATE"

    def __init__(self, url: DatabaseUrl) -> None:
        import psycopg  # only for PostgreSQL: the SQLite default never loads it

        self._psycopg = psycopg
        self.integrity_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
        self.connection_lost: tuple[type[Exception], ...] = (psycopg.OperationalError,)
        self._args = url.session_args()
        self._sql: dict[str, str] = {}

    def connect(self) -> Any:
        from psycopg.rows import namedtuple_row

        return self._psycopg.connect(**self._args, row_factory=namedtuple_row)

    def sql(self, text: str) -> str:
        found = self._sql.get(text)
        if found is None:
            found = self._sql[text] = _NAMED.sub(r"%(\1)s", text.replace("%", "%%"))
        return found

    @staticmethod
    def params(values: Mapping[str, Any]) -> Mapping[str, Any]:
        return values

    @staticmethod
    def begin(write: bool) -> str | None:
        return None  # psycopg begins a transaction at the first statement

    @staticmethod
    def commit(conn: Any) -> None:
        conn.commit()

    @staticmethod
    def rollback(conn: Any) -> None:
        conn.rollback()

    @staticmethod
    def usable(conn: Any) -> bool:
        """False for a connection known to be gone. One the server dropped unseen (a
        restart, an idle timeout) shows at its next statement: Tx.execute replaces it."""
        return not (conn.closed or conn.broken)


Dialect = SqliteDialect | PostgresDialect


def dialect_for(url: DatabaseUrl) -> Dialect:
    return SqliteDialect(url) if url.kind == "sqlite" else PostgresDialect(url)

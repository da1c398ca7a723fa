"""The study database's URL (`MAILFLOW_DATABASE_URL`), read without SQLAlchemy.

The same URLs as SQLAlchemy's, so existing settings keep working: `sqlite:///relative.db`,
`sqlite:////absolute.db`, `postgresql+psycopg://user:pass@host:5432/db?sslmode=require`,
`postgresql+psycopg://user@/db?host=/run/postgresql` (a Unix socket). The pattern and the
unquoting are SQLAlchemy's (engine/url.py `_parse_url`), so a URL parses as it did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

# SQLAlchemy's URL pattern: the password may hold ":" but not "@"; a host in [] is IPv6.
_URL = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)
SQLITE_NAMES = ("sqlite", "sqlite+pysqlite")
# psycopg (3) is the driver this project pins; plain "postgresql" means it too.
POSTGRES_NAMES = ("postgresql", "postgresql+psycopg")


class DatabaseUrlError(ValueError):
    """A database URL this app cannot use; the message says what to write instead."""


@dataclass(frozen=True)
class DatabaseUrl:
    kind: str  # "sqlite" | "postgresql"
    path: Path | None = None  # SQLite's file
    connect: dict[str, str | int] = field(default_factory=dict)  # psycopg.connect(**…)
    text: str = ""  # as given, for the migration process (SQLAlchemy reads it there)

    def session_args(self) -> dict[str, str | int]:
        """psycopg.connect's arguments for every PostgreSQL session of the app (the web's
        and the migration process's alike): the URL's, with a UTC session added to any
        `options` it gives, so timestamps come back in UTC whatever the server's TimeZone
        says and an export reads the same from either database."""
        args = dict(self.connect)
        args["options"] = f"{args.get('options', '')} -c timezone=UTC".strip()
        return args

    @property
    def sqlalchemy(self) -> str:
        """The URL for SQLAlchemy (migrations), naming the psycopg driver explicitly:
        to SQLAlchemy a bare "postgresql://" means psycopg2, which is not installed."""
        if self.kind == "postgresql" and self.text.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.text.removeprefix("postgresql://")
        return self.text


def parse(url: str) -> DatabaseUrl:
    m = _URL.match(url.strip())
    if m is None:
        # Not echoed: a URL that fails to parse may still hold a password.
        raise DatabaseUrlError(
            "not a database URL: write sqlite:////path/to/file or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        )
    name = m["name"]
    database = unquote(m["database"]) if m["database"] is not None else ""
    if name in SQLITE_NAMES:
        if not database or database == ":memory:" or m["query"]:
            raise DatabaseUrlError(
                "a SQLite study database must be a file, e.g. sqlite:////var/lib/mailflow/db"
            )
        return DatabaseUrl("sqlite", path=Path(database), text=url.strip())
    if name not in POSTGRES_NAMES:
        raise DatabaseUrlError(
            f"the study database must be SQLite or PostgreSQL (postgresql+psycopg://…), not {name}"
        )
    connect: dict[str, str | int] = {}
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(m["query"] or ""):
        query.setdefault(key, []).append(value)
    # As SQLAlchemy's psycopg dialect does: query options go to the driver; a repeated one
    # (several hosts) becomes libpq's comma-separated list.
    connect.update({key: ",".join(values) for key, values in query.items()})
    host = m["ipv4host"] or m["ipv6host"]
    if host:
        connect["host"] = host
    if m["port"]:
        connect["port"] = int(m["port"])
    if m["username"]:
        connect["user"] = unquote(m["username"])
    if m["password"]:  # as SQLAlchemy: an empty password is none
        connect["password"] = unquote(m["password"])
    if database:
        connect["dbname"] = database
    return DatabaseUrl("postgresql", connect=connect, text=url.strip())

"""MAILFLOW_DATABASE_URL read without SQLAlchemy, the way SQLAlchemy read it: the same
psycopg connection arguments as SQLAlchemy's psycopg dialect made, the same SQLite file;
a URL the app cannot use refused at start with the variable named."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from app.config import ConfigError, Settings
from app.study.dburl import DatabaseUrlError, parse

POSTGRES = [
    "postgresql+psycopg://postgres@/study_1?host=/tmp/mailflow-pg-x",
    "postgresql+psycopg://mail:s%40cret%3Aw0rd@db.example:6543/mail%20flow",
    "postgresql+psycopg://mail:p:ss@[2001:db8::1]:5432/mailflow?sslmode=require",
    "postgresql+psycopg://u@/db?host=/a&host=/b&application_name=mailflow",
    "postgresql+psycopg://u:@localhost/db",
]


@pytest.mark.parametrize("url", POSTGRES)
def test_postgresql_urls_connect_as_sqlalchemy_did(url: str) -> None:
    engine = create_engine(url)  # no connection is made: only its arguments are built
    _, expected = engine.dialect.create_connect_args(engine.url)
    expected.pop("context")  # SQLAlchemy's own type adapters
    if set(str(expected.get("port", "x"))) == {","}:
        del expected["port"]  # several hosts, no ports: libpq's default for each, as here
    parsed = parse(url)
    assert parsed.kind == "postgresql"
    assert parsed.connect == expected


def test_a_bare_postgresql_url_means_psycopg() -> None:
    parsed = parse("postgresql://u@h/db")
    assert parsed.connect == {"host": "h", "user": "u", "dbname": "db"}
    assert parsed.sqlalchemy == "postgresql+psycopg://u@h/db"  # not psycopg2 (absent)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////var/lib/mailflow/mailflow.db", "/var/lib/mailflow/mailflow.db"),
        ("sqlite:///relative/progress.db", "relative/progress.db"),
        ("sqlite+pysqlite:////tmp/a%20b.db", "/tmp/a b.db"),
    ],
)
def test_sqlite_urls_name_the_same_file(url: str, path: str) -> None:
    assert parse(url).path == Path(path) == Path(create_engine(url).url.database or "")


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "postgresql+asyncpg://u@h/db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////tmp/x.db?mode=ro",
        "not a url",
    ],
)
def test_urls_the_app_cannot_use_are_refused_at_start(url: str) -> None:
    with pytest.raises(DatabaseUrlError):
        parse(url)
    with pytest.raises(ConfigError, match="MAILFLOW_DATABASE_URL"):
        Settings(database_url=url).check()


def test_a_url_that_does_not_parse_is_not_repeated_in_the_error() -> None:
    # It may still hold a password, and the error goes to the console and the logs.
    url = "postgresql:/mailflow:s3cret-pw@db/study"
    with pytest.raises(ConfigError) as refused:
        Settings(database_url=url).check()
    assert "s3cret-pw" not in str(refused.value)
    assert "postgresql+psycopg://" in str(refused.value)  # says what to write instead

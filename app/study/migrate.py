"""`python -m app.study.migrate`: bring the study database to the newest Alembic revision.

Runs in a process of its own (schema.migrate starts it when the schema is behind, as
app/prepare.py does for a new data directory), because SQLAlchemy and Alembic, once
imported, would stay in the web process for as long as it lives. The database URL comes
from the environment (MAILFLOW_DATABASE_URL, or the data directory's default file).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text

from app.config import Settings
from app.study.db import private_sqlite_file
from app.study.dburl import parse
from app.study.schema import MIGRATIONS

# Any fixed number: the PostgreSQL advisory lock that lets one process at a time migrate.
MIGRATION_LOCK = 0x4D46_4C01


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine on the study database, set up as the app's own connections are
    (WAL and friends on SQLite, a UTC session on PostgreSQL): for Alembic and for tests."""
    parsed = parse(url)
    if parsed.kind == "postgresql":
        import psycopg

        # Connected with exactly the web's arguments (dburl.session_args), not through
        # SQLAlchemy's own reading of the URL: its `options` (a search_path) and hosts
        # would otherwise be read differently here, and the schema made where the web
        # does not look.
        args = parsed.session_args()
        return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(**args))
    assert parsed.path is not None
    private_sqlite_file(parsed.path)
    engine = create_engine(parsed.sqlalchemy, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # set in the file: a new database is WAL
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def upgrade(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # The Config is a ConfigParser: a "%" in the URL (an escaped socket path or password)
    # must be doubled to survive its interpolation.
    rendered = engine.url.render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Several workers may start at once on one database: the first migrates
                # inside this transaction (PostgreSQL's DDL is transactional), the others
                # wait here and then find the schema at head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def main() -> int:
    upgrade(Settings.from_env().resolved_database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

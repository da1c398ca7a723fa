"""Alembic migrations: from empty to head on a real SQLite file and a real PostgreSQL
database, and again (a no-op). The app checks the revision with the DB-API and runs Alembic
in a process of its own (`python -m app.study.migrate`) only when the schema is behind."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from waiting import wait_until

from app.study.db import Database
from app.study.migrate import MIGRATION_LOCK, make_engine
from app.study.schema import MIGRATIONS, current_revision, head_revision, migrate

TABLES = {
    "alembic_version",
    "study_secret",
    "learner",
    "answer",
    "card_state",
    "speed_run",
    "exam_run",
    "exam_answer",
}


def test_upgrade_from_empty_then_again(database_url: str) -> None:
    db = Database(database_url)
    assert current_revision(db) is None
    migrate(db)
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head_revision() == head == current_revision(db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        conn.execute(
            text("INSERT INTO learner (id, created_at) VALUES ('x', '2026-01-01T00:00:00Z')")
        )
        conn.commit()

    # A second start on the same database keeps the data and changes nothing.
    migrate(Database(database_url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM learner")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_sqlite_file_is_created_with_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "study.db"
    db = Database(f"sqlite:///{path}")
    migrate(db)
    assert path.exists()
    with db.read() as tx:
        assert tx.scalar("PRAGMA journal_mode") == "wal"
    db.close()


def test_models_match_the_migrated_schema(database_url: str) -> None:
    from app.study.models import metadata

    migrate(Database(database_url))
    engine = make_engine(database_url)
    insp = inspect(engine)
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in insp.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_a_second_worker_waits_while_the_first_migrates_on_postgresql(postgres: Any) -> None:
    """Workers starting at once on one empty PostgreSQL database migrate one at a time.

    This test plays the first worker: it holds the migration lock. The app's migrate()
    (its migration process) must wait for it (seen in the server's lock table, where the
    process's request for the lock shows as not granted) and create nothing meanwhile;
    once the lock goes, it migrates.
    """
    url = postgres.new_database()
    db = Database(url)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(db)
        except BaseException as exc:  # reported below
            errors.append(exc)

    asked = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND ((classid::bigint << 32) | objid::bigint) = %s"
    )
    with postgres.connect(db.url.connect["dbname"]) as first:
        first.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        worker = threading.Thread(target=start)
        worker.start()
        # The other process's wait shows only in the server's lock table.
        wait_until(
            lambda: (
                first.execute(asked, (MIGRATION_LOCK,)).fetchone() == (1,) or not worker.is_alive()
            ),
            "the migration process asking for the migration lock",
        )
        assert worker.is_alive(), f"migrate() ended without waiting for the lock: {errors}"
        tables = first.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        assert tables == (0,)  # nothing created while the first worker holds the lock
        first.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        worker.join()
    assert errors == []
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()
    db.close()


def test_the_migration_process_connects_as_the_web_does_options_included(postgres: Any) -> None:
    """A URL's `options` (here a search_path) reach the migration process as they reach
    the web's sessions: the tables are made in the schema the web then reads, and the
    next start finds the schema at head instead of migrating again."""
    url = postgres.new_database()
    dbname = url.split("@/", 1)[1].split("?")[0]
    with postgres.connect(dbname) as conn:
        conn.execute("CREATE SCHEMA mailflow")
    url += "&options=-csearch_path%3Dmailflow"
    db = Database(url)
    migrate(db)
    with postgres.connect(dbname) as conn:
        made = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mailflow'"
            )
        }
    assert made >= TABLES
    assert current_revision(db) == head_revision()

"""Alembic migrations: from empty to head on a real SQLite file and a real PostgreSQL
database, and again (a no-op)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url

from app.study.db import MIGRATION_LOCK, MIGRATIONS, make_engine, migrate

STALLED = 20.0  # only turns a deadlock into a failure; the waits end on events

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
    engine = make_engine(database_url)
    migrate(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        conn.execute(
            text("INSERT INTO learner (id, created_at) VALUES ('x', '2026-01-01T00:00:00Z')")
        )
        conn.commit()
    engine.dispose()

    # A second start on the same database keeps the data and changes nothing.
    engine = make_engine(database_url)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM learner")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_sqlite_file_is_created_with_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "study.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    assert path.exists()
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_models_match_the_migrated_schema(database_url: str) -> None:
    from app.study.models import metadata

    engine = make_engine(database_url)
    migrate(engine)
    insp = inspect(engine)
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in insp.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_a_second_worker_waits_while_the_first_migrates_on_postgresql(postgres: Any) -> None:
    """Workers starting at once on one empty PostgreSQL database migrate one at a time.

    This test plays the first worker: it holds the migration lock. The app's migrate()
    must wait for it (seen by the statement it is executing) and create nothing meanwhile;
    once the lock goes, it migrates.
    """
    url = postgres.new_database()
    engine = make_engine(url)
    waiting = threading.Event()

    def spot(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if "pg_advisory_xact_lock" in statement:
            waiting.set()

    event.listen(engine, "before_cursor_execute", spot)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with postgres.connect(make_url(url).database) as first:
        first.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        worker = threading.Thread(target=start)
        worker.start()
        assert waiting.wait(STALLED), "migrate() did not ask for the migration lock"
        tables = first.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        assert tables == (0,)  # nothing created while the first worker holds the lock
        first.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        worker.join()
    assert errors == []
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()

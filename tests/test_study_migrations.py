"""Alembic migrations: from empty to head on a real SQLite file and a real PostgreSQL
database, and again (a no-op)."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from app.study.db import MIGRATIONS, make_engine, migrate

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
    from app.study.models import Base

    engine = make_engine(database_url)
    migrate(engine)
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in insp.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
    engine.dispose()

"""Is the schema at the newest revision? Checked with the DB-API; migrated elsewhere.

The tables are SQLAlchemy's (models.py) and their history is Alembic's (migrations/). The
web only reads `alembic_version` and compares it with the newest revision file; when they
differ (a new database, an upgrade), `python -m app.study.migrate` runs Alembic in a
short-lived process of its own, so SQLAlchemy and Alembic (about 25 MiB together) never
stay resident in the web process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from app.study.db import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ROOT = Path(__file__).resolve().parent.parent.parent


class MigrationFailed(RuntimeError):
    """The migration process failed; the message carries the end of what it printed."""


def head_revision() -> str | None:
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


def current_revision(db: Database) -> str | None:
    with db.read() as tx:
        if tx.scalar(db.dialect.has_table, {"name": "alembic_version"}) is None:
            return None
        return tx.scalar("SELECT version_num FROM alembic_version")


def migrate(db: Database) -> None:
    """Bring the schema to the newest revision (from empty on a fresh database).

    Several processes may start at once on one database; each that finds the schema
    behind starts a migration, and those wait for each other on PostgreSQL's advisory
    lock (migrate.py), or on SQLite's file lock, and the later ones find nothing to do.
    """
    head = head_revision()
    if head is not None and current_revision(db) == head:
        return
    url = db.url.text
    if db.url.path is not None:  # the migration process starts in ROOT: an absolute path
        url = f"sqlite:///{db.url.path.resolve()}"
    # The URL goes by the environment, not the command line, where `ps` would show a password.
    env = {**os.environ, "MAILFLOW_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "app.study.migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MigrationFailed(f"migrating the study database failed:\n{done.stderr[-2000:]}")

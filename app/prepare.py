"""`python -m app.prepare`: what only a data directory's first start needs, done apart.

Making the lab certificates needs `cryptography` and creating the study database needs
Alembic; once imported, a process keeps them (about 22 MB together) for as long as it
lives. `python -m app` therefore runs this in a short-lived process of its own, in
parallel with importing the web stack, when the data directory is new; the web then
finds both ready and imports neither. (A database that exists but is behind the newest
revision, after an upgrade, is migrated by `python -m app.study.migrate`, which the web
starts for it: the web never imports Alembic or SQLAlchemy.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def needed(settings: Settings) -> bool:
    from app.engines.tls import HOSTS_STAMP

    fresh_db = not settings.database_url and not (settings.data_dir / "mailflow.db").exists()
    return fresh_db or not (settings.tls_dir / HOSTS_STAMP).exists()


def start(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Start the preparation if this data directory needs it (the environment carries
    the settings); the caller waits for it before the web starts."""
    if not needed(settings):
        return None
    return subprocess.Popen([sys.executable, "-m", "app.prepare"], cwd=ROOT)


def main() -> int:
    from app.engines.tls import LabTLS
    from app.study.migrate import upgrade

    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    LabTLS.load(settings.tls_dir)
    upgrade(settings.resolved_database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

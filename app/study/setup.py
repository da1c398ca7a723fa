"""Start-up of the study modes (database, migrations). Filled in by the study package."""

from __future__ import annotations

from typing import Any

from app.config import Settings


def init_study(settings: Settings) -> Any:
    """Prepare what the study pages need; the returned object is kept as app.state.study."""
    return None

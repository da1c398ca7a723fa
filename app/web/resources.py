"""Where the templates and static files are: inside the installed package, else the source tree.

The source tree keeps `templates/` and `static/` at the top level (beside `app/`); the wheel
carries them as `app/templates` and `app/static` (see setup.py). Looking inside the package first
means an installed app never depends on the working directory it was started from.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent


def resource_dir(name: str) -> Path:
    """`name` ("templates" or "static") in the installed package, or beside `app/` in a checkout."""
    packaged = files("app") / name
    if packaged.is_dir():
        # A wheel installs into a real directory, so the Traversable is a filesystem path.
        return Path(str(packaged))
    return SOURCE_ROOT / name


TEMPLATE_DIR = resource_dir("templates")
STATIC_DIR = resource_dir("static")

"""Notes the app writes itself, in the reader's language.

A protocol line is shown exactly as it was exchanged. A note is the app's own
sentence about something it observed (a firewall dropping a connection, a bounce
being built, what a mail program decoded), so it is kept as data: the event's
`detail["note"]` holds the template ids of its lines and the values that really
occurred (JSON), `text` holds the English rendering (for logs, tests and the JSON
feed), and a page renders it in its own language from app/content/notes.toml.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from app.events import Event
from app.langs import LANGS

NOTES_FILE = Path(__file__).resolve().parent / "content" / "notes.toml"

Line = tuple[str, Mapping[str, object]]


@lru_cache(maxsize=1)
def templates() -> dict[str, dict[str, str]]:
    data = tomllib.loads(NOTES_FILE.read_text("utf-8"))
    for key, entry in data.items():
        if any(not entry.get(lang) for lang in LANGS):
            raise ValueError(f"notes.toml: '{key}' needs both ja and en")
    return data


def _render(lines: list[list], lang: str) -> str:
    table = templates()
    return "\n".join(table[tid][lang].format_map(values) for tid, values in lines)


def note(*lines: Line) -> tuple[str, dict[str, str]]:
    """The English text and the event detail of a note made of these lines."""
    data = [[tid, {k: str(v) for k, v in values.items()}] for tid, values in lines]
    unknown = [tid for tid, _values in data if tid not in templates()]
    if unknown:
        raise KeyError(f"no note template {unknown}")
    return _render(data, "en"), {"note": json.dumps(data, ensure_ascii=False)}


def localized(event: Event, lang: str) -> str:
    """What to show for an event: a note in `lang`, anything else exactly as recorded."""
    raw = event.detail.get("note")
    if not raw or lang not in LANGS:
        return event.text
    try:
        return _render(json.loads(raw), lang)
    except (ValueError, KeyError, TypeError):
        return event.text  # a note from an older build: its recorded English

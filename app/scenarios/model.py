"""Scenarios as data: what the actors do, never the lines they exchange."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.langs import LANGS

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "content" / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that does not say what the runner needs."""


@dataclass(frozen=True)
class Action:
    do: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    slug: str
    order: int
    title: dict[str, str]
    intro: dict[str, str]
    summary: dict[str, str]
    topics: tuple[str, ...]
    mail: dict[str, Any]
    actions: tuple[Action, ...]
    # further mails by name ([mails.<name>]), picked by an action's `mail = "<name>"`
    mails: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what the world sets up beyond the default (app.world.world.WorldOptions)
    world: dict[str, Any] = field(default_factory=dict)

    def text(self, part: str, lang: str) -> str:
        return getattr(self, part)[lang]

    @property
    def uses_smime(self) -> bool:
        """Its run imports `cryptography` (S/MIME): the recording worker runs it in a
        process of its own (app/web/record_worker.py, `alone`)."""
        mails = (self.mail, *self.mails.values())
        return any(m.get("smime") for m in mails) or any(a.do == "smime_open" for a in self.actions)


def _bilingual(data: dict[str, Any], name: str, path: Path) -> dict[str, str]:
    value = data.get(name)
    if not isinstance(value, dict) or any(not value.get(lang) for lang in LANGS):
        raise ScenarioError(f"{path.name}: '{name}' needs both ja and en text")
    return {lang: str(value[lang]).strip() for lang in LANGS}


def load_scenario(path: Path) -> Scenario:
    data = tomllib.loads(path.read_text("utf-8"))
    slug = data.get("slug") or path.stem
    if slug != path.stem:
        raise ScenarioError(f"{path.name}: slug '{slug}' must match the file name")
    raw_actions = data.get("actions")
    if not raw_actions:
        raise ScenarioError(f"{path.name}: no [[actions]]")
    actions = []
    for raw in raw_actions:
        raw = dict(raw)
        do = raw.pop("do", None)
        if not do:
            raise ScenarioError(f"{path.name}: an action has no 'do'")
        actions.append(Action(do, raw))
    return Scenario(
        slug=slug,
        order=int(data.get("order", 100)),
        title=_bilingual(data, "title", path),
        intro=_bilingual(data, "intro", path),
        summary=_bilingual(data, "summary", path),
        topics=tuple(data.get("topics", ())),
        mail=dict(data.get("mail", {})),
        actions=tuple(actions),
        mails={k: dict(v) for k, v in data.get("mails", {}).items()},
        world=dict(data.get("world", {})),
    )


def load_all(directory: Path = SCENARIO_DIR) -> dict[str, Scenario]:
    scenarios = [load_scenario(p) for p in sorted(directory.glob("*.toml"))]
    scenarios.sort(key=lambda s: (s.order, s.slug))
    return {s.slug: s for s in scenarios}

"""`/flow`: every scenario as a card, filtered by exam topic with `?topic=` (no JS).

Topic names come from app/content/quiz/topics.toml when it is there (the study
modes' list of exam topics); an id without a name is shown as the id itself.
Protocols are read off the scenario's actions, since a scenario lists actions,
never lines.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from app.scenarios.model import Scenario
from app.web import i18n

TOPICS_FILE = Path(__file__).resolve().parent.parent / "content" / "quiz" / "topics.toml"

# What each known action speaks on the wire; unknown actions are matched by name below.
ACTION_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "submit": ("SMTP",),
    "relay": ("DNS", "SMTP"),
    "deliver": ("LMTP",),
    "pop3_fetch": ("POP3",),
    "imap_fetch": ("IMAP",),
}
_NAME_HINTS = (
    ("pop", "POP3"),
    ("imap", "IMAP"),
    ("lmtp", "LMTP"),
    ("deliver", "LMTP"),
    ("smtp", "SMTP"),
    ("submit", "SMTP"),
    ("relay", "SMTP"),
    ("send", "SMTP"),
    ("dns", "DNS"),
    ("mx", "DNS"),
)
PROTOCOL_ORDER = ("DNS", "SMTP", "LMTP", "POP3", "IMAP")


@lru_cache(maxsize=1)
def topic_names() -> dict[str, dict[str, str]]:
    try:
        data = tomllib.loads(TOPICS_FILE.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {
        str(t["id"]): {"ja": str(t.get("ja", t["id"])), "en": str(t.get("en", t["id"]))}
        for t in data.get("topics", [])
        if isinstance(t, dict) and "id" in t
    }


def topic_label(topic: str, lang: str) -> str:
    return topic_names().get(topic, {}).get(lang, topic)


def protocols(scenario: Scenario) -> tuple[str, ...]:
    found: set[str] = set()
    for action in scenario.actions:
        known = ACTION_PROTOCOLS.get(action.do)
        if known is not None:
            found.update(known)
            continue
        found.update(p for hint, p in _NAME_HINTS if hint in action.do.lower())
    return tuple(p for p in PROTOCOL_ORDER if p in found)


def all_topics(scenarios: list[Scenario]) -> list[str]:
    """Topics in the exam list's order, then any others the scenarios use."""
    used = {t for s in scenarios for t in s.topics}
    ordered = [t for t in topic_names() if t in used]
    return ordered + sorted(used - set(ordered))


def scenario_list(request: Request) -> Response:
    scenarios: list[Scenario] = list(request.app.state.flow.scenarios.values())
    lang = i18n.current_lang.get()
    topic = request.query_params.get("topic") or None
    topics = all_topics(scenarios)
    known = set(topics) | set(topic_names())
    status = 200
    shown = scenarios
    if topic is not None:
        if topic not in known:
            status, shown = 400, []  # a clear page with every valid topic, not a blank list
        else:
            shown = [s for s in scenarios if topic in s.topics]
    return request.app.state.templates.TemplateResponse(
        request,
        "flow_list.html",
        {
            "scenarios": shown,
            "topics": topics,
            "topic": topic,
            "bad_topic": status == 400,
            "topic_label": lambda t: topic_label(t, lang),
            "protocols": protocols,
            "lang": lang,
        },
        status_code=status,
    )

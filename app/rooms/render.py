"""Renders room messages once per language (and role) and caches what repeats.

A step is rendered once per language per process, then the same bytes go to every
student of that language: the cost of a `next` does not grow with the template work
times the number of students.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from app.events import Event
from app.explanations import Catalog
from app.rooms.model import Poll, RoomMeta
from app.rooms.polls import most_chosen_wrong
from app.scenarios.recording import Recording
from app.study.content import Content
from app.web import i18n
from app.web.flow_view import explain

STAGES_CACHED = 64


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class Renderer:
    def __init__(self, templates: Any, catalog: Catalog, content: Content) -> None:
        self.env = templates.env if hasattr(templates, "env") else templates
        self.catalog = catalog
        self.content = content
        # The stage block per (recording, language): rendered once for a room's run and
        # the same bytes sent to the teacher and every student; room.js moves it to the
        # room's step. Keyed by identity (a recording is not hashable), bounded.
        self._stages: OrderedDict[tuple[int, str], tuple[Recording, str]] = OrderedDict()

    def render(self, name: str, lang: str, **context: Any) -> str:
        token = i18n.current_lang.set(lang)
        try:
            return self.env.get_template(name).render(lang=lang, **context)
        finally:
            i18n.current_lang.reset(token)

    def stage(self, recording: Recording, lang: str) -> str:
        """Both stages (full, compact) at step 0 and their per-step moves, for a room page."""
        key = (id(recording), lang)
        hit = self._stages.get(key)
        if hit is not None and hit[0] is recording:
            self._stages.move_to_end(key)
            return hit[1]
        html = self.render("_stage_block.html", lang, recording=recording, step=0)
        self._stages[key] = (recording, html)
        while len(self._stages) > STAGES_CACHED:
            self._stages.popitem(last=False)
        return html

    def event(self, events: Sequence[Event], index: int, lang: str) -> str:
        return self.render(
            "_event.html", lang, event=events[index], step=index + 1, catalog=self.catalog
        )

    def poll(
        self,
        poll: Poll,
        events: Sequence[Event],
        lang: str,
        role: str,
        *,
        counts: list[int] | None = None,
        mine: int | None = None,
    ) -> str:
        question = self.content.questions.get(poll.qid) if poll.qid else None
        recorded = events[poll.point] if poll.point is not None else None
        exp = explain(self.catalog, recorded) if recorded is not None else None
        total = sum(counts) if counts else 0
        wrong = most_chosen_wrong(poll, counts) if counts and poll.revealed else None
        return self.render(
            "room_poll.html",
            lang,
            poll=poll,
            role=role,
            counts=counts,
            total=total,
            mine=mine,
            question=question,
            recorded=recorded,
            exp=exp,
            wrong=wrong,
        )

    def results(self, meta: RoomMeta, lang: str, rows: list[dict[str, Any]]) -> str:
        return self.render("room_results.html", lang, meta=meta, rows=rows)

    def question_text(self, poll: Poll, lang: str) -> str:
        """One line naming the question, for results and the teacher's CSV."""
        if poll.qid and poll.qid in self.content.questions:
            return self.content.questions[poll.qid].stem[lang]
        token = i18n.current_lang.set(lang)
        try:
            return i18n.gettext("What does the client send next? (after step %(step)s)") % {
                "step": poll.step
            }
        finally:
            i18n.current_lang.reset(token)

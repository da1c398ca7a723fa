"""Rendering the stage: one call, from a recording and a step, for any page.

`render_stage(recording, step, lang)` is what the flow page, the slide export and a
classroom console all use; `stage_moves(...)` is the per-step data flow.js needs to
move the packet (the same for the full and the compact stage).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING

import jinja2
from markupsafe import Markup

from app.web import i18n
from app.web.stage import Stage, derive

if TYPE_CHECKING:
    from app.scenarios.recording import Recording


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    from app.web.templating import make_templates

    return make_templates().env.get_template("_stage.svg")


# A recording is immutable, so its stages are derived once per (run, language, size);
# keyed by identity (events hold dicts, so a recording is not hashable), bounded.
_CACHE: OrderedDict[tuple[int, str, bool], tuple[Recording, Stage]] = OrderedDict()
_CACHE_SIZE = 64


def stage_of(recording: Recording, lang: str, *, compact: bool = False) -> Stage:
    key = (id(recording), lang, compact)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is recording:
        _CACHE.move_to_end(key)
        return hit[1]
    stage = derive(recording.events, lang, compact=compact)
    title = i18n.translations(lang).gettext("The mail's journey: who talks to whom")
    stage = Stage(**{**stage.__dict__, "title": title})
    _CACHE[key] = (recording, stage)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return stage


def render_stage(
    recording: Recording, step: int, lang: str, *, compact: bool = False, standalone: bool = False
) -> Markup:
    """The stage's SVG at `step` (0 before the first line), in `lang`."""
    stage = stage_of(recording, lang, compact=compact)
    step = max(0, min(step, len(stage.moves)))
    token = i18n.current_lang.set(lang)
    try:
        return Markup(_template().render(stage=stage, step=step, standalone=standalone))
    finally:
        i18n.current_lang.reset(token)


def stage_moves(recording: Recording, lang: str) -> str:
    """Per step: [link, src, dst, direction, tls, packet text, text alternative, forward].

    JSON for a `<script type="application/json">` block (data, never run, so the
    page's Content-Security-Policy allows it); every `<` is escaped (\\u003c), so no mail
    text can end the block or open a comment in it.
    """
    stage = stage_of(recording, lang)
    rows = [
        [m.link, m.src, m.dst, m.direction[0], int(m.tls), m.text, m.live, int(m.forward)]
        for m in stage.moves
    ]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")

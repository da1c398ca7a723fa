"""The flow socket's frames of one recording, rendered once and shared by every socket.

A class shares the pool's recording (docs/architecture.md, "Recordings"), so what a
learner's `next` sends is the same text for all of them: the step's JSON frame (event,
its HTML, the position) depends only on the recording, the language, the step and
whether the player runs. `FramesCache.of(recording, lang)` keeps those per recording;
a `next` then costs a dict lookup and the send, not a render and a JSON encoding.

Bounded: an entry lives only as long as its recording (weak keys), and recordings are
bounded by the pool and the session store (TTL and count); per recording, at most two
HTML strings, two step frames and one stage block per event, and one summary.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any

from app.scenarios.recording import Recording
from app.web.flow_view import hops

Render = Callable[..., str]  # (template name, lang, **context) → HTML
rendered = 0  # templates this process rendered for the flow socket (tests read it)


def encode(message: dict[str, Any]) -> str:
    """The JSON text of a frame, exactly as Starlette's send_json would write it."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class Frames:
    """Rendered HTML and encoded frames of one recording in one language."""

    def __init__(self, recording: Recording, lang: str, render: Render, catalog: Any) -> None:
        # Weak: the cache's key is the recording; a strong reference here would keep every
        # recording (and its HTML) alive for the life of the process.
        self._recording = weakref.ref(recording)
        self.lang = lang
        self._render = render
        self._catalog = catalog
        self.total = len(recording.events)
        self._plain: dict[int, str] = {}
        self._current: dict[int, str] = {}  # the line marked aria-current
        self._steps: dict[tuple[int, bool], str] = {}
        self._stages: dict[int, str] = {}
        self._summary = ""

    @property
    def recording(self) -> Recording:
        recording = self._recording()
        assert recording is not None, "used after its recording was dropped"
        return recording

    def event_html(self, index: int, *, current: bool) -> str:
        cache = self._current if current else self._plain
        html = cache.get(index)
        if html is None:
            event = self.recording.events[index]
            extra = {"current": True} if current else {}
            html = self._render(
                "_event.html",
                self.lang,
                event=event,
                step=index + 1,
                catalog=self._catalog,
                **extra,
            )
            cache[index] = html
        return html

    def log_html(self, cursor: int) -> str:
        """The revealed log up to `cursor`, its last line marked current."""
        if cursor <= 0:
            return ""
        plain = [self.event_html(i, current=False) for i in range(cursor - 1)]
        return "".join([*plain, self.event_html(cursor - 1, current=True)])

    def summary_html(self) -> str:
        if not self._summary:
            self._summary = self._render(
                "_summary.html", self.lang, hops=hops(self.recording.events)
            )
        return self._summary

    def stage_html(self, step: int) -> str:
        html = self._stages.get(step)
        if html is None:
            html = self._render(
                "_stage_block.html", self.lang, recording=self.recording, step=step, lang=self.lang
            )
            self._stages[step] = html
        return html

    def panel(self, cursor: int) -> int:
        return self.recording.events[cursor - 1].panel if cursor else 0

    def position(self, cursor: int, playing: bool) -> dict[str, Any]:
        return {
            "step": cursor,
            "total": self.total,
            "panel": self.panel(cursor),
            "playing": playing,
        }

    def step_frame(self, cursor: int, playing: bool) -> str:
        """The `step` frame that reveals event `cursor` (1-based), encoded once."""
        key = (cursor, playing)
        text = self._steps.get(key)
        if text is None:
            event = self.recording.events[cursor - 1]
            text = encode(
                {
                    "type": "step",
                    "event": event.to_json(),
                    "html": self.event_html(cursor - 1, current=True),
                    **self.position(cursor, playing),
                }
            )
            self._steps[key] = text
        return text


class FramesCache:
    """`Frames` per (recording, language), alive as long as the recording is."""

    def __init__(self, render: Render, catalog: Any) -> None:
        def counted(name: str, lang: str, /, **context: Any) -> str:
            global rendered
            rendered += 1
            return render(name, lang, **context)

        self._render = counted
        self._catalog = catalog
        self._by: weakref.WeakKeyDictionary[Recording, dict[str, Frames]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, recording: Recording, lang: str) -> Frames:
        langs = self._by.get(recording)
        if langs is None:
            langs = self._by[recording] = {}
        frames = langs.get(lang)
        if frames is None:
            frames = langs[lang] = Frames(recording, lang, self._render, self._catalog)
        return frames

    def __len__(self) -> int:
        return len(self._by)

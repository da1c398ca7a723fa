"""The in-memory hub: lab events fan out to every live view, newest kept for late joiners.

Each event becomes one Frame, rendered at most once per language however many
viewers there are: every viewer is sent the same bytes. Each subscriber has a
bounded queue; one that cannot keep up is marked behind (its queue emptied) and
the live view tells it so and closes it (the page reconnects and gets the recent
events again). Nobody waits for a slow viewer: not the engines, not the others.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable

from app.events import Event

RECENT = 300
SUBSCRIBER_QUEUE = 1000

Render = Callable[[Event, str], str]  # (event, lang) -> the event's <li> HTML


class Frame:
    """One published event and its rendered forms, made on first use and shared."""

    __slots__ = ("_html", "_text", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._html: dict[str, str] = {}
        self._text: dict[str, str] = {}

    @property
    def seq(self) -> int:
        return self.event.seq

    def html(self, lang: str, render: Render) -> str:
        html = self._html.get(lang)
        if html is None:
            html = self._html[lang] = render(self.event, lang)
        return html

    def text(self, lang: str, render: Render) -> str:
        """The whole `event` websocket message, serialised once per language."""
        text = self._text.get(lang)
        if text is None:
            html = self.html(lang, render)
            message = {"type": "event", "event": self.event.to_json(), "html": html}
            text = self._text[lang] = json.dumps(message, ensure_ascii=False)
        return text


class Subscription:
    """One viewer's bounded queue of frames."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[Frame] = deque()
        self.behind = False  # it fell behind: it gets nothing more
        self.kicked = asyncio.Event()  # set when it falls behind
        self._ready = asyncio.Event()

    def offer(self, frame: Frame) -> bool:
        """Queue a frame; False if this viewer just fell behind."""
        if self.behind:
            return True
        if len(self.frames) >= self.limit:
            self.behind = True
            self.frames.clear()
            self.kicked.set()
            self._ready.set()
            return False
        self.frames.append(frame)
        self._ready.set()
        return True

    async def next(self) -> Frame | None:
        """The next frame, or None once the viewer has fallen behind."""
        while not self.frames:
            if self.behind:
                return None
            self._ready.clear()
            await self._ready.wait()
        return None if self.behind else self.frames.popleft()

    def empty(self) -> bool:
        return not self.frames

    def get_nowait(self) -> Frame:
        return self.frames.popleft()


class Hub:
    def __init__(self, queue_size: int = SUBSCRIBER_QUEUE) -> None:
        self.queue_size = queue_size
        self.recent: deque[Frame] = deque(maxlen=RECENT)
        self._subscribers: set[Subscription] = set()
        self.dropped = 0  # viewers closed for falling behind

    def publish(self, event: Event) -> None:
        frame = Frame(event)
        self.recent.append(frame)
        for sub in self._subscribers:
            if not sub.offer(frame):
                self.dropped += 1

    def subscribe(self) -> Subscription:
        sub = Subscription(self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def clear(self) -> None:
        self.recent.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

"""The in-memory hub: lab events fan out to every live view, newest kept for late joiners.

Each subscriber has a bounded queue; one that cannot keep up loses its oldest events
(and is told so), never slowing the engines or the other viewers.
"""

from __future__ import annotations

import asyncio
from collections import deque

from app.events import Event

RECENT = 300
SUBSCRIBER_QUEUE = 1000


class Hub:
    def __init__(self) -> None:
        self.recent: deque[Event] = deque(maxlen=RECENT)
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.dropped = 0

    def publish(self, event: Event) -> None:
        self.recent.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # a slow viewer loses its oldest event, nobody waits
                self.dropped += 1
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(queue)

    def clear(self) -> None:
        self.recent.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

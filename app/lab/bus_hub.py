"""The lab's live view across web workers: the hub of the worker that runs the lab also
publishes its events on the bus, and every other worker's hub is fed from the bus.

Engines call Hub.publish synchronously and must never wait, so events are batched and
sent by one task (a bounded buffer: a stalled bus drops the oldest, as a slow viewer
does, never the mail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque

from app.bus import Bus, Subscription
from app.events import Event
from app.lab.hub import Hub

CHANNEL = "lab:events"
BUFFER = 5000


class PublishingHub(Hub):
    """The lab worker's hub: local viewers as before, and every event onto the bus."""

    def __init__(self, bus: Bus) -> None:
        super().__init__()
        self.bus = bus
        self._out: deque[dict[str, object] | str] = deque(maxlen=BUFFER)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._send())

    def publish(self, event: Event) -> None:
        super().publish(event)
        self._out.append(event.to_json())
        self._wake.set()

    def clear(self) -> None:
        super().clear()
        self._out.append("clear")
        self._wake.set()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = list(self._out)
            self._out.clear()
            if batch:
                with contextlib.suppress(Exception):  # a bus hiccup must not stop the lab
                    await self.bus.publish(CHANNEL, json.dumps(batch).encode())

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


async def follow(bus: Bus, hub: Hub) -> Subscription:
    """A worker without the lab: its hub repeats what the lab worker published."""

    def on_batch(raw: bytes) -> None:
        for item in json.loads(raw):
            if item == "clear":
                hub.clear()
            else:
                hub.publish(Event(**item))

    return await bus.subscribe(CHANNEL, on_batch)

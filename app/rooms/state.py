"""Everything the room routes and sockets share in one process (app.state.rooms)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from app.bus import Bus
from app.rooms.hub import RoomHub
from app.rooms.limits import Buckets
from app.rooms.render import Renderer
from app.rooms.service import RoomService
from app.study.setup import Study
from app.web.service import FlowService

SWEEP_EVERY = 60.0


@dataclass
class Rooms:
    bus: Bus
    service: RoomService
    hub: RoomHub
    renderer: Renderer
    flow: FlowService
    study: Study
    joins: Buckets  # joins (and room creations) per client address
    messages_per_second: float = 10.0  # per socket, after a burst of twice that
    sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        # The memory bus drops expired rooms lazily; this bounds memory between lookups.
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.bus.sweep()  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self.sweeper
        await self.bus.close()


def teacher_cookie(code: str) -> str:
    return f"mft_{code}"


def student_cookie(code: str) -> str:
    return f"mfs_{code}"

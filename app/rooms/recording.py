"""The one recording a room shows: a real run of its scenario, taken from the pool.

A recording is immutable data from a real run, so a room shares the pool's ready one
(as learners on the flow page do): creating a room waits for no run unless the pool is
still empty after a cold start. Everyone in the room sees that same run.
"""

from __future__ import annotations

from app.scenarios.recording import Recording
from app.web.service import FlowService


async def room_recording(flow: FlowService, slug: str, lang: str) -> Recording:
    return await flow.recordings.get(slug, lang)

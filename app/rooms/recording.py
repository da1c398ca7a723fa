"""The one recording a room shows: a real run of its scenario, made once at creation.

Behind one function so the room can later take its run from the recording pool instead
of running the scenario itself (today's FlowService API).
"""

from __future__ import annotations

from app.scenarios.runner import Recording
from app.web.service import FlowService


async def room_recording(flow: FlowService, slug: str, lang: str) -> Recording:
    return await flow.record(slug, lang)

"""The flow socket's frame cache (app/web/flow_frames.py): rendered once per recording and
language, and gone with its recording."""

from __future__ import annotations

import gc
import weakref

from app.events import Event
from app.scenarios.recording import Recording
from app.web.flow_frames import FramesCache


def _recording(n: int) -> Recording:
    events = tuple(
        Event(
            seq=i,
            session="s1",
            panel=1,
            direction="c2s",
            src="mua-alice",
            dst="msa-a",
            protocol="SMTP",
            port=587,
            tls=False,
            text=f"NOOP {i}",
            key="smtp.noop",
        )
        for i in range(n)
    )
    return Recording(slug="basic-pop3", lang="en", events=events, started=0.0, seconds=0.1)


def _render(name: str, lang: str, /, **context: object) -> str:
    return f"<li>{name} {lang} {context.get('step')}</li>"


def test_a_recording_dropped_by_everyone_leaves_the_cache() -> None:
    # A pool refill or a learner's "record afresh" makes a new recording; the old one's
    # frames must go with it, or every refill and every Reset pins its HTML for good.
    cache = FramesCache(_render, catalog=None)
    recording = _recording(4)
    frames = cache.of(recording, "en")
    first = frames.step_frame(1, False)
    assert cache.of(recording, "en") is frames and frames.step_frame(1, False) is first
    gone = weakref.ref(recording)
    del recording, frames
    gc.collect()
    assert gone() is None
    assert len(cache._by) == 0

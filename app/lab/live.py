"""The lab's live view: events from the lab listeners, numbered, to every open page."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.events import Event, renumber
from app.lab.hub import Hub
from app.lab.mask import mask_secrets
from app.web import i18n
from app.web.messages import MAX_MESSAGE_BYTES

router = APIRouter()


class LiveSink:
    """Numbers each lab event and hands it to the hub; engines call it synchronously."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._seq = itertools.count(1)

    def __call__(self, event: Event) -> None:
        # Masked here, before the hub: no path out of the hub carries a typed secret.
        self.hub.publish(renumber(mask_secrets(event), next(self._seq)))


renders = 0  # events rendered to HTML by this process (tests and benches read it)


def render_event(ws: WebSocket, event: Event, lang: str) -> str:
    global renders
    renders += 1
    token = i18n.current_lang.set(lang)
    try:
        template = ws.app.state.templates.get_template("_event.html")
        return template.render(
            event=event, step=event.seq, catalog=ws.app.state.flow.catalog, masked=True
        )
    finally:
        i18n.current_lang.reset(token)


def _parse(raw: str | bytes | None) -> dict[str, Any] | str:
    """The live view only understands {"type": "hello", "lang": "ja"|"en"}."""
    if raw is None or len(raw) > MAX_MESSAGE_BYTES:
        return "message missing or too large"
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(msg, dict) or msg.get("type") != "hello":
        return 'expected {"type": "hello", "lang": "ja" | "en"}'
    if msg.get("lang", "ja") not in i18n.LANGS or set(msg) - {"type", "lang"}:
        return "lang must be ja or en, and nothing else may be sent"
    return msg


BEHIND_CODE = 1013  # RFC 6455 §7.4.1 "try again later": the page reconnects and resyncs
BEHIND = json.dumps(
    {
        "type": "error",
        "code": "fell_behind",
        "message": "this view fell behind the lab's events; reconnecting to catch up",
    }
)
CLOSE_SECONDS = 5.0  # how long a viewer that reads nothing may hold up its own close


@router.websocket("/ws/lab")
async def lab_socket(ws: WebSocket) -> None:
    await ws.accept()
    hub: Hub | None = getattr(ws.app.state, "hub", None)
    if hub is None:
        await ws.send_json(
            {
                "type": "error",
                "code": "lab_off",
                "message": "the lab listeners are off (MAILFLOW_LAB=0)",
            }
        )
        await ws.close()
        return
    lang = i18n.DEFAULT_LANG
    sub = hub.subscribe()
    send_lock = asyncio.Lock()

    def render(event: Event, lang: str) -> str:
        return render_event(ws, event, lang)

    async def send(text: str) -> None:
        async with send_lock:
            await ws.send_text(text)

    shown_up_to = 0

    async def pump() -> None:
        # The same bytes for every viewer of a language: each frame is rendered and
        # serialised once (app/lab/hub.py), here it is only sent.
        while True:
            frame = await sub.next()
            if frame is None:
                return
            if frame.seq > shown_up_to:  # else already sent with the recent ones
                await send(frame.text(lang, render))

    async def kick() -> None:
        """A viewer that fell behind is told so and closed; its page reconnects."""
        await sub.kicked.wait()
        if pumper is not None:
            pumper.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(send(BEHIND), CLOSE_SECONDS)
            await asyncio.wait_for(ws.close(BEHIND_CODE, "fell behind"), CLOSE_SECONDS)

    pumper: asyncio.Task[None] | None = None
    kicker = asyncio.create_task(kick())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            parsed = _parse(message.get("text") if "text" in message else message.get("bytes"))
            if isinstance(parsed, str):
                await send(json.dumps({"type": "error", "code": "bad_message", "message": parsed}))
                continue
            lang = parsed.get("lang", "ja")
            if pumper is None and not sub.behind:
                # Late joiners first see what happened recently, then everything new.
                recent = list(hub.recent)
                shown_up_to = recent[-1].seq if recent else 0
                html = "".join(f.html(lang, render) for f in recent)
                await send(json.dumps({"type": "recent", "html": html, "count": len(recent)}))
                pumper = asyncio.create_task(pump())
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)
        for task in (pumper, kicker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

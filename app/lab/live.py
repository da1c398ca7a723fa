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


def render_event(ws: WebSocket, event: Event, lang: str) -> str:
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
    queue = hub.subscribe()
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            await ws.send_json(message)

    shown_up_to = 0

    async def pump() -> None:
        while True:
            event = await queue.get()
            if event is None:
                return
            if event.seq <= shown_up_to:
                continue  # already sent with the recent ones
            await send(
                {"type": "event", "event": event.to_json(), "html": render_event(ws, event, lang)}
            )

    pumper: asyncio.Task[None] | None = None
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            parsed = _parse(message.get("text") if "text" in message else message.get("bytes"))
            if isinstance(parsed, str):
                await send({"type": "error", "code": "bad_message", "message": parsed})
                continue
            lang = parsed.get("lang", "ja")
            if pumper is None:
                # Late joiners first see what happened recently, then everything new.
                recent = list(hub.recent)
                shown_up_to = recent[-1].seq if recent else 0
                html = "".join(render_event(ws, e, lang) for e in recent)
                await send({"type": "recent", "html": html, "count": len(recent)})
                pumper = asyncio.create_task(pump())
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(queue)
        if pumper is not None:
            pumper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumper

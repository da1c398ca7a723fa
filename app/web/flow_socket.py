"""The flow websocket: the learner's controls in, recorded events out.

Messages both ways are documented in docs/protocol.md. Every incoming message is
validated (app/web/messages.py); a bad one gets an `error` reply and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.web import i18n
from app.web.flow_view import hops
from app.web.messages import (
    Back,
    BadMessage,
    Goto,
    Hello,
    Next,
    Pause,
    Play,
    Reset,
    Restart,
    Speed,
    parse,
)
from app.web.service import FlowService
from app.web.sessions import FlowSession

router = APIRouter()


class FlowConnection:
    def __init__(self, ws: WebSocket, flow: FlowService) -> None:
        self.ws = ws
        self.flow = flow
        self.templates = ws.app.state.templates
        self.session: FlowSession | None = None
        self.lang = i18n.DEFAULT_LANG
        self._send_lock = asyncio.Lock()
        self._player: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_json(message)

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    def _render(self, name: str, **context: Any) -> str:
        token = i18n.current_lang.set(self.lang)
        try:
            return self.templates.get_template(name).render(**context)
        finally:
            i18n.current_lang.reset(token)

    def _event_html(self, index: int) -> str:
        assert self.session is not None
        event = self.session.recording.events[index]
        current = index + 1 == self.session.cursor
        return self._render(
            "_event.html", event=event, step=index + 1, catalog=self.flow.catalog, current=current
        )

    def _panel(self) -> int:
        s = self.session
        return s.recording.events[s.cursor - 1].panel if s and s.cursor else 0

    def _position(self) -> dict[str, Any]:
        assert self.session is not None
        return {
            "step": self.session.cursor,
            "total": self.session.total,
            "panel": self._panel(),
            "playing": self.playing,
        }

    @property
    def playing(self) -> bool:
        return self._player is not None and not self._player.done()

    async def sync(self, *, fresh: bool) -> None:
        """Send the whole revealed log, e.g. after a jump or a fresh run."""
        s = self.session
        assert s is not None
        html = "".join(self._event_html(i) for i in range(s.cursor))
        summary = self._render("_summary.html", hops=hops(s.recording.events))
        extra: dict[str, Any] = {}
        if fresh:  # a new run: the stage's data (queue ids, file names) is new too
            extra["stage_html"] = self._render(
                "_stage_block.html", recording=s.recording, step=s.cursor, lang=self.lang
            )
        await self.send(
            {
                "type": "sync",
                "session": s.id,
                "fresh": fresh,
                "html": html,
                "summary_html": summary,
                **extra,
                **self._position(),
            }
        )

    # -- controls ----------------------------------------------------------
    async def hello(self, msg: Hello) -> None:
        self.lang = msg.lang
        if msg.slug not in self.flow.scenarios:
            await self.error("unknown_scenario", f"no scenario named '{msg.slug}'")
            return
        session = self.flow.sessions.get(msg.session)
        fresh = session is None or session.slug != msg.slug
        if fresh:
            # Unknown or expired session (e.g. the server restarted): run the mail again.
            session = await self.flow.new_session(msg.slug, msg.lang)
        assert session is not None
        self.session = session
        session.move_to(msg.step)
        if fresh:
            await self.sync(fresh=True)
        else:
            await self.send({"type": "ready", "session": session.id, **self._position()})

    async def step_forward(self) -> bool:
        s = self.session
        assert s is not None
        if s.cursor >= s.total:
            await self.send({"type": "end", **self._position()})
            return False
        s.cursor += 1
        event = s.recording.events[s.cursor - 1]
        await self.send(
            {
                "type": "step",
                "event": event.to_json(),
                "html": self._event_html(s.cursor - 1),
                **self._position(),
            }
        )
        return True

    async def step_back(self) -> None:
        s = self.session
        assert s is not None
        if s.cursor > 0:
            s.cursor -= 1
        await self.send({"type": "back", **self._position()})

    async def _play(self) -> None:
        assert self.session is not None
        try:
            while await self.step_forward():
                if self.session.cursor >= self.session.total:
                    break
                await asyncio.sleep(1.0 / self.session.speed)
        finally:
            self._player = None
            with contextlib.suppress(Exception):
                await self.send({"type": "state", **self._position()})

    def stop(self) -> None:
        if self._player is not None:
            self._player.cancel()
            self._player = None

    async def handle(self, raw: str | bytes) -> None:
        try:
            msg = parse(raw)
        except BadMessage as exc:
            await self.error("bad_message", str(exc))
            return
        if isinstance(msg, Hello):
            self.stop()
            await self.hello(msg)
            return
        if self.session is None:
            await self.error("no_session", "send a hello message first")
            return
        s = self.session
        if isinstance(msg, Next):
            self.stop()
            await self.step_forward()
        elif isinstance(msg, Back):
            self.stop()
            await self.step_back()
        elif isinstance(msg, Play):
            if not self.playing:
                if s.cursor >= s.total:
                    s.cursor = 0
                    await self.sync(fresh=False)
                self._player = asyncio.create_task(self._play())
            await self.send({"type": "state", **self._position()})
        elif isinstance(msg, Pause):
            self.stop()
            await self.send({"type": "state", **self._position()})
        elif isinstance(msg, Speed):
            s.speed = msg.value
            await self.send({"type": "state", "speed": s.speed, **self._position()})
        elif isinstance(msg, Restart):
            self.stop()
            s.move_to(0)
            await self.sync(fresh=False)
        elif isinstance(msg, Goto):
            self.stop()
            s.move_to(msg.step)
            await self.sync(fresh=False)
        elif isinstance(msg, Reset):
            self.stop()
            self.flow.sessions.replace(s, await self.flow.record(s.slug, self.lang))
            await self.sync(fresh=True)


@router.websocket("/ws/flow")
async def flow_socket(ws: WebSocket) -> None:
    await ws.accept()
    conn = FlowConnection(ws, ws.app.state.flow)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                await conn.handle(raw)
            except WebSocketDisconnect:
                raise
            except Exception as exc:  # a failed run must not take the socket down
                await conn.error("server_error", f"{exc.__class__.__name__}: {exc}")
    except WebSocketDisconnect:
        pass
    finally:
        conn.stop()

"""The flow websocket: the learner's controls in, recorded events out.

Messages both ways are documented in docs/protocol.md. Every incoming message is
validated (app/web/messages.py); a bad one gets an `error` reply and changes nothing.

A socket's cost is bounded (docs/protocol.md, "Limits"): reading and validating a
message is cheap; what costs (rendering and sending) is done by one worker per
socket at most RATE times a second after a burst of BURST. Position changes that
arrive while the worker waits are merged into one exact move (messages.Move), so a
flood of gotos costs its sender a few renders and nobody else anything. What is sent is
rendered once per recording and language and shared by every socket on it
(app/web/flow_frames.py): a `next` sends an already encoded frame, a sync joins strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.web import i18n
from app.web.flow_frames import Frames, FramesCache, encode
from app.web.messages import (
    Back,
    BadMessage,
    Goto,
    Hello,
    Move,
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

RATE = 20.0  # renders (and, on average, messages) per second per socket
BURST = 50  # messages at once before the rate applies
OVERDRAFT = 5000  # messages beyond RATE and BURST before the socket is closed
MAX_PENDING = 64  # queued non-position messages before the socket is closed
POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
renders = 0  # frames with rendered HTML this process sent (tests and benches read it)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; may go into debt when spending."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def spend(self) -> float:
        """Take one token even if there is none; return what is left (may be negative)."""
        self._refill()
        self.tokens -= 1
        return self.tokens

    async def take(self) -> None:
        """Take one token, waiting for it if there is none."""
        self._refill()
        while self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self._refill()
        self.tokens -= 1


class TooFast(Exception):
    """The socket kept exceeding its limit well past the burst: it is closed (1008)."""


class FlowConnection:
    def __init__(self, ws: WebSocket, flow: FlowService) -> None:
        self.ws = ws
        self.flow = flow
        self.session: FlowSession | None = None
        self.lang = i18n.DEFAULT_LANG
        self._send_lock = asyncio.Lock()
        self._player: asyncio.Task[None] | None = None
        self._received = TokenBucket(RATE, BURST)  # what the client sends
        self._budget = TokenBucket(RATE, BURST)  # what the worker renders and sends
        self._pending: deque[Any] = deque()  # messages (and merged Moves) to act on
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopped = False
        self._frames = frames_cache(ws)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(encode(message), rendered="html" in message)

    async def send_text(self, text: str, *, rendered: bool) -> None:
        """Send an encoded frame; `rendered`: it carries event HTML (counted)."""
        global renders
        if rendered:
            renders += 1
        async with self._send_lock:
            await self.ws.send_text(text)

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    @property
    def frames(self) -> Frames:
        """The shared frames of this session's recording in this socket's language."""
        assert self.session is not None
        return self._frames.of(self.session.recording, self.lang)

    def _position(self) -> dict[str, Any]:
        assert self.session is not None
        return self.frames.position(self.session.cursor, self.playing)

    @property
    def playing(self) -> bool:
        return self._player is not None and not self._player.done()

    async def sync(self, *, fresh: bool) -> None:
        """Send the whole revealed log, e.g. after a jump or a fresh run."""
        s = self.session
        assert s is not None
        frames = self.frames
        extra: dict[str, Any] = {}
        if fresh:  # a new run: the stage's data (queue ids, file names) is new too
            extra["stage_html"] = frames.stage_html(s.cursor)
        await self.send(
            {
                "type": "sync",
                "session": s.id,
                "fresh": fresh,
                "html": frames.log_html(s.cursor),
                "summary_html": frames.summary_html(),
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
        await self.send_text(self.frames.step_frame(s.cursor, self.playing), rendered=True)
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

    # -- what the client sends ----------------------------------------------------
    def offer(self, raw: str | bytes) -> Hello | Reset | None:
        """Take one incoming frame: cheap, never renders. Hello and Reset are returned
        (the caller runs them once the queue is drained); the rest is queued, position
        changes merged. Raises TooFast when the socket is far over its limit."""
        if self._received.spend() < -OVERDRAFT:
            raise TooFast(f"more than {RATE:g} messages a second, far beyond the burst of {BURST}")
        try:
            msg: Any = parse(raw)
        except BadMessage as exc:
            msg = ("bad_message", str(exc))
        if isinstance(msg, Hello | Reset):
            return msg
        pending = self._pending
        last = pending[-1] if pending else None
        if isinstance(msg, Next | Back | Goto | Restart):
            if self.session is None:
                msg = ("no_session", "send a hello message first")
            else:
                move = Move.of(msg, self.session.total)
                if isinstance(last, Move):
                    pending[-1] = last.then(move)
                else:
                    pending.append(move)
                self._wake.set()
                return None
        if (isinstance(msg, Play | Pause) and isinstance(last, Play | Pause)) or (
            isinstance(msg, Speed) and isinstance(last, Speed)
        ):
            pending[-1] = msg  # only the last of a run of these matters
        elif len(pending) >= MAX_PENDING:
            raise TooFast(f"more than {MAX_PENDING} messages waiting")
        else:
            pending.append(msg)
        self._idle.clear()
        self._wake.set()
        return None

    async def drained(self) -> None:
        """Wait until the worker has acted on everything queued (or has stopped)."""
        while (self._pending or not self._idle.is_set()) and not self.stopped:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    async def work(self) -> None:
        """Act on queued messages, at most RATE a second after BURST."""
        try:
            while True:
                if not self._pending:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._idle.clear()
                await self._budget.take()  # meanwhile, new position changes merge
                item = self._pending.popleft()
                try:
                    await self.act(item)
                except WebSocketDisconnect:
                    return
                except Exception as exc:  # a failed run must not take the socket down
                    await self.error("server_error", f"{exc.__class__.__name__}: {exc}")
        finally:
            self.stopped = True  # the socket is gone (or broken): the reader stops too
            self._idle.set()

    async def run(self, msg: Hello | Reset) -> None:
        """Hello and Reset change the session: run in order, after everything before.

        The reader waits for them (the client's further frames wait in the socket), so
        position changes read afterwards always know the session and its length."""
        await self.drained()
        if self.stopped:
            return
        await self._budget.take()
        try:
            await self.act(msg)
        except WebSocketDisconnect:
            raise
        except Exception as exc:
            await self.error("server_error", f"{exc.__class__.__name__}: {exc}")

    async def act(self, msg: Any) -> None:
        if isinstance(msg, tuple):
            await self.error(*msg)
            return
        if isinstance(msg, Hello):
            self.stop()
            await self.hello(msg)
            return
        if self.session is None:
            await self.error("no_session", "send a hello message first")
            return
        s = self.session
        if isinstance(msg, Move):
            self.stop()
            if isinstance(msg.first, Next):
                await self.step_forward()
            elif isinstance(msg.first, Back):
                await self.step_back()
            else:  # a goto, a restart or several moves at once: the log up to there
                s.move_to(msg.apply(s.cursor))
                await self.sync(fresh=False)
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
        elif isinstance(msg, Reset):
            self.stop()
            self.flow.sessions.replace(s, await self.flow.record(s.slug, self.lang))
            await self.sync(fresh=True)


def frames_cache(ws: WebSocket) -> FramesCache:
    """The app's one cache of rendered frames (made on the first socket)."""
    state = ws.app.state
    cache: FramesCache | None = getattr(state, "flow_frames", None)
    if cache is None:
        templates = state.templates

        def render(name: str, lang: str, /, **context: Any) -> str:
            token = i18n.current_lang.set(lang)
            try:
                return templates.get_template(name).render(**context)
            finally:
                i18n.current_lang.reset(token)

        cache = state.flow_frames = FramesCache(render, state.flow.catalog)
    return cache


@router.websocket("/ws/flow")
async def flow_socket(ws: WebSocket) -> None:
    await ws.accept()
    conn = FlowConnection(ws, ws.app.state.flow)
    worker = asyncio.create_task(conn.work())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                now = conn.offer(raw)
            except TooFast as exc:
                await ws.close(POLICY_VIOLATION, str(exc)[:120])
                break
            if now is not None:
                await conn.run(now)
            if conn.stopped:
                break  # the worker found the socket gone
            # Frames already buffered come back from receive() without a pause: let
            # other clients' work run between two of a flooder's messages.
            await asyncio.sleep(0)
    except WebSocketDisconnect:
        pass
    finally:
        conn.stop()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker

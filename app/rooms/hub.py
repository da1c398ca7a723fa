"""This process's room sockets and the fan-out of what the bus says happened.

Each room with a local socket subscribes to its channel once. A message from the bus
(published by whichever worker served the teacher) is rendered once per language and
role, and the same string is written to every local socket in one loop (see Conn).
The next step is rendered ahead, while the class reads the current one, so a `next`
costs the fan-out and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from app.bus import Subscription
from app.rooms.model import RoomMeta
from app.rooms.polls import tally
from app.rooms.render import Renderer, dumps
from app.rooms.service import RoomService, Student
from app.rooms.wire import Outgoing, raw_transport

log = logging.getLogger("mailflow.rooms")
MAX_HELD = 256  # messages held for one socket until its sync is out (see Conn)
REFRESH = 0.15  # seconds: live counts and tallies are coalesced to this rate
MISSING: Any = object()


class Conn:
    """One socket: a teacher's console or a student's phone.

    Two ways out. On uvicorn's sans-I/O websockets (the product's server), the raw way
    (app/rooms/wire.py): written to the socket's transport with no await, never waiting
    for a phone that stopped reading (one MAX_BACKLOG behind is cut off; it resumes in
    sync when it reconnects); without compression the frame is built once for the whole
    room. On another server, Starlette's `send_text`. A send that fails marks the socket
    closed and it is skipped from then on; the socket's own loop detaches it.

    A socket attaches (hears the bus) before the room is read for its sync, so no change
    falls between the two; what the bus says until the sync is out is held and sent right
    after it, in order (`release`). Sent at once, a step could reach the phone before a
    sync read before that step, and the sync took the phone back.
    """

    __slots__ = ("closed", "code", "held", "lang", "raw", "role", "student", "ws")

    def __init__(
        self, ws: WebSocket, code: str, role: str, lang: str, student: Student | None
    ) -> None:
        self.ws, self.code, self.role, self.lang, self.student = ws, code, role, lang, student
        self.closed = False
        self.raw = raw_transport(ws)  # None: this socket takes the framed way
        self.held: list[Outgoing] | None = []  # None once its sync is out

    def write(self, out: Outgoing) -> bool | None:
        """The raw way: True written (or held), False gone, None: use `send` instead."""
        if self.closed:
            return False
        if self.held is not None:
            if len(self.held) >= MAX_HELD:
                return False  # a teacher racing a slow sync: cut off, it syncs again
            self.held.append(out)
            return True
        return self._write(out)

    def _write(self, out: Outgoing) -> bool | None:
        return None if self.raw is None else self.raw.write(out)

    async def release(self, first: Outgoing) -> None:
        """Send the sync (`first`), then what was held meanwhile, in order; from then on
        the socket takes the fan-out directly. Held stays a list until the last is out, so
        a fan-out during an await here queues behind instead of overtaking."""
        held = self.held if self.held is not None else []
        held.insert(0, first)
        while held and not self.closed:
            out = held.pop(0)
            written = self._write(out)
            if written is None:
                try:
                    await self.ws.send_text(out.text)
                except Exception:
                    written = False
            if written is False:
                self.closed = True
        self.held = None
        if self.closed:  # cut off while held: close, so the phone reconnects and syncs
            with contextlib.suppress(Exception):
                await self.ws.close(code=1013)

    async def send(self, text: str | Outgoing) -> bool:
        out = text if isinstance(text, Outgoing) else Outgoing(text)
        written = self.write(out)
        if written is not None:
            self.closed = not written
            return written
        try:
            await self.ws.send_text(out.text)
        except Exception:
            self.closed = True
            return False
        return True


@dataclass
class LocalRoom:
    code: str
    conns: set[Conn] = field(default_factory=set)
    sub: Subscription | None = None
    steps: dict[tuple[int, str], str] = field(default_factory=dict)  # rendered step messages
    pending: set[str] = field(default_factory=set)  # refreshes already scheduled


class RoomHub:
    def __init__(self, service: RoomService, renderer: Renderer) -> None:
        self.service = service
        self.renderer = renderer
        self.rooms: dict[str, LocalRoom] = {}
        self._lock = asyncio.Lock()
        self.raw_writes = 0  # fan-out frames written the raw way (see Conn), for the tests

    @property
    def connections(self) -> int:
        return sum(len(r.conns) for r in self.rooms.values())

    async def attach(self, conn: Conn) -> None:
        async with self._lock:
            room = self.rooms.get(conn.code)
            if room is None:
                code = conn.code
                room = self.rooms[code] = LocalRoom(code)
                try:
                    room.sub = await self.service.bus.subscribe(
                        self.service.key(code), lambda raw: self.on_bus(code, raw)
                    )
                except BaseException:
                    # Left behind, the room would take the next socket in without ever
                    # hearing the bus; that socket subscribes afresh instead.
                    del self.rooms[code]
                    raise
            room.conns.add(conn)

    async def detach(self, conn: Conn) -> None:
        conn.closed = True
        async with self._lock:
            room = self.rooms.get(conn.code)
            if room is None:
                return
            room.conns.discard(conn)
            if not room.conns:
                del self.rooms[conn.code]
                if room.sub is not None:
                    await room.sub.close()

    # -- fan-out ------------------------------------------------------------------------
    async def fan_out(
        self,
        room: LocalRoom,
        build: Callable[[str, str], str | None],
        roles: tuple[str, ...] = ("teacher", "student"),
    ) -> None:
        """build(lang, role) is called once per language and role present; its text is
        framed once and that frame written to every socket that takes it raw, in one
        loop with no await; the others are sent to after it (see Conn)."""
        cache: dict[tuple[str, str], Outgoing | None] = {}
        framed: list[tuple[Conn, Outgoing]] = []
        for conn in list(room.conns):
            if conn.role not in roles:
                continue
            key = (conn.lang, conn.role)
            out = cache.get(key, MISSING)
            if out is MISSING:
                text = build(*key)
                out = cache[key] = None if text is None else Outgoing(text)
            if out is None:
                continue
            written = conn.write(out)
            if written is None:
                framed.append((conn, out))
            elif not written:
                conn.closed = True
            else:
                self.raw_writes += 1
        for conn, out in framed:
            await conn.send(out)

    async def on_bus(self, code: str, raw: bytes) -> None:
        room = self.rooms.get(code)
        if room is None:
            return
        msg = json.loads(raw)
        kind = msg.get("t")
        if kind == "step":
            await self._step(room, int(msg["step"]))
        elif kind in ("back", "log", "lock", "unpoll"):
            meta = await self.service.meta(code)
            if meta is not None:
                await self._position(room, meta, kind)
        elif kind in ("count", "tally"):
            self._schedule(room, kind)
        elif kind in ("poll", "reveal"):
            meta = await self.service.meta(code)
            if meta is not None:
                await self._poll(room, meta)
        elif kind == "end":
            meta = await self.service.meta(code)
            if meta is not None:
                await self._ended(room, meta)

    async def _step(self, room: LocalRoom, step: int) -> None:
        recording = await self.service.recording(room.code)
        if recording is None or not 1 <= step <= len(recording.events):
            return
        events = recording.events

        def build(lang: str, role: str = "") -> str:
            return self._step_text(room, events, step, lang)

        await self.fan_out(room, build)
        if step < len(events):
            langs = {c.lang for c in room.conns}
            asyncio.get_running_loop().call_soon(self._ahead, room, events, step + 1, langs)

    def _step_text(self, room: LocalRoom, events: Any, step: int, lang: str) -> str:
        key = (step, lang)
        text = room.steps.get(key)
        if text is None:
            text = room.steps[key] = dumps(
                {
                    "type": "step",
                    "step": step,
                    "total": len(events),
                    "panel": events[step - 1].panel,
                    "html": self.renderer.event(events, step - 1, lang),
                }
            )
        return text

    def ahead(self, code: str, events: Any, step: int, lang: str) -> None:
        """Render the step after `step` for a socket that just attached (so the first
        `next` of a class does not wait for a template to compile)."""
        room = self.rooms.get(code)
        if room is not None and 1 <= step + 1 <= len(events):
            self._ahead(room, events, step + 1, {lang})

    def _ahead(self, room: LocalRoom, events: Any, step: int, langs: set[str]) -> None:
        for lang in langs:
            self._step_text(room, events, step, lang)

    async def _position(self, room: LocalRoom, meta: RoomMeta, kind: str) -> None:
        recording = await self.service.recording(room.code)
        if recording is None:
            return
        events = recording.events

        def build(lang: str, role: str) -> str:
            message: dict[str, Any] = {
                "type": kind,
                "step": meta.step,
                "total": meta.total,
                "panel": events[meta.step - 1].panel if meta.step else 0,
                "locked": meta.locked,
            }
            if kind == "log":
                message["html"] = self.log_html(events, meta.step, lang)
            return dumps(message)

        await self.fan_out(room, build)

    def log_html(self, events: Any, step: int, lang: str) -> str:
        return "".join(self.renderer.event(events, i, lang) for i in range(step))

    async def _poll(self, room: LocalRoom, meta: RoomMeta) -> None:
        poll = meta.current()
        recording = await self.service.recording(room.code)
        if poll is None or recording is None:
            return
        answers = await self.service.answers(meta.code, poll.id)
        counts = tally(poll, answers)
        events = recording.events
        cache: dict[tuple[str, str, int | None], Outgoing] = {}
        # Students see the distribution only once the answer is revealed.
        for conn in list(room.conns):
            mine = None
            if conn.student is not None and conn.student.id in answers:
                mine = int(answers[conn.student.id])
            key = (conn.lang, conn.role, mine)
            if key not in cache:
                shown = counts if (conn.role == "teacher" or poll.revealed) else None
                cache[key] = Outgoing(
                    dumps(
                        {
                            "type": "reveal" if poll.revealed else "poll",
                            "poll": poll.id,
                            "answered": mine,
                            "html": self.renderer.poll(
                                poll, events, conn.lang, conn.role, counts=shown, mine=mine
                            ),
                        }
                    )
                )
            await conn.send(cache[key])

    def _schedule(self, room: LocalRoom, kind: str) -> None:
        if kind in room.pending:
            return
        room.pending.add(kind)

        async def later() -> None:
            await asyncio.sleep(REFRESH)  # coalesce a burst of joins or answers into one
            room.pending.discard(kind)
            try:
                await (self._count(room) if kind == "count" else self._tally(room))
            except Exception:
                log.exception("room %s: %s refresh failed", room.code, kind)

        asyncio.get_running_loop().create_task(later())

    async def _count(self, room: LocalRoom) -> None:
        joined = await self.service.joined(room.code)
        text = dumps({"type": "count", "joined": joined})
        await self.fan_out(room, lambda lang, role: text)

    async def _tally(self, room: LocalRoom) -> None:
        meta = await self.service.meta(room.code)
        if meta is None or (poll := meta.current()) is None:
            return
        recording = await self.service.recording(room.code)
        if recording is None:
            return
        counts = tally(poll, await self.service.answers(meta.code, poll.id))

        def build(lang: str, role: str) -> str:
            html = self.renderer.poll(poll, recording.events, lang, role, counts=counts)
            return dumps({"type": "tally", "poll": poll.id, "answered": sum(counts), "html": html})

        await self.fan_out(room, build, roles=("teacher",))

    async def _ended(self, room: LocalRoom, meta: RoomMeta) -> None:
        answers = await self.service.all_answers(meta)
        for conn in list(room.conns):
            rows = results_for(self.renderer, meta, answers, conn)
            await conn.send(
                dumps(
                    {
                        "type": "ended",
                        "html": self.renderer.results(meta, conn.lang, rows),
                    }
                )
            )


def results_for(
    renderer: Renderer,
    meta: RoomMeta,
    answers: dict[int, dict[str, bytes]],
    conn: Conn | None,
    *,
    lang: str | None = None,
    sid: str | None = None,
) -> list[dict[str, Any]]:
    """A student's own results (or, for a teacher, nothing personal)."""
    lang = lang or (conn.lang if conn else "ja")
    if sid is None and conn is not None and conn.student is not None:
        sid = conn.student.id
    rows = []
    for poll in meta.polls:
        raw = answers.get(poll.id, {}).get(sid or "")
        choice = int(raw) if raw is not None else None
        rows.append(
            {
                "question": renderer.question_text(poll, lang),
                "answer": poll.label(lang, choice) if choice is not None else None,
                "right": poll.right[choice] if choice is not None else None,
                "correct": [poll.label(lang, i) for i, r in enumerate(poll.right) if r],
            }
        )
    return rows

"""The room websocket `/ws/room`: the teacher's controls and the students' answers in,
the room's steps, polls and results out (docs/protocol.md, "Classroom rooms").

Who is who comes from the HttpOnly cookies the room pages set (a teacher token, or a
student token), never from a message: a student cannot act as the teacher or answer
for another. Origin is checked by the security middleware before this runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.bus import BusError
from app.rooms.hub import Conn, results_for
from app.rooms.limits import Buckets
from app.rooms.messages import (
    AnswerMsg,
    Back,
    End,
    Goto,
    Hello,
    Lock,
    Next,
    OpenPoll,
    Reveal,
    Unpoll,
    parse,
)
from app.rooms.model import RoomMeta
from app.rooms.polls import exam_poll, exam_questions, predict_poll, tally
from app.rooms.render import dumps
from app.rooms.service import next_poll_id, open_poll
from app.rooms.state import Rooms, student_cookie, teacher_cookie
from app.rooms.wire import Outgoing
from app.study.store import utcnow
from app.web.messages import BadMessage

log = logging.getLogger("mailflow.rooms")
router = APIRouter()
MAX_STRIKES = 20  # refused messages (bad, too fast) before the socket is closed


class RoomSocket:
    def __init__(self, ws: WebSocket, rooms: Rooms) -> None:
        self.ws, self.rooms = ws, rooms
        self.service = rooms.service
        self.conn: Conn | None = None
        rate = rooms.messages_per_second
        self.bucket = Buckets(rate, 2 * rate)
        self.strikes = 0

    async def reply(self, message: dict[str, Any]) -> None:
        if self.conn is not None:
            await self.conn.send(dumps(message))
        else:
            await self.ws.send_text(dumps(message))

    async def error(self, code: str, message: str) -> None:
        self.strikes += 1
        await self.reply({"type": "error", "code": code, "message": message})

    # -- hello --------------------------------------------------------------------------
    async def hello(self, msg: Hello) -> bool:
        meta = await self.service.meta(msg.code)
        if meta is None:
            await self.reply({"type": "gone"})
            return False
        student = None
        if msg.role == "teacher":
            if not self.service.is_teacher(meta, self.ws.cookies.get(teacher_cookie(msg.code))):
                await self.error("not_teacher", "this browser did not create the room")
                return False
        else:
            student = await self.service.student(
                msg.code, self.ws.cookies.get(student_cookie(msg.code))
            )
            if student is None:
                await self.error("not_joined", "join the room first")
                return False
        self.conn = Conn(self.ws, msg.code, msg.role, msg.lang, student)
        # Hear the bus first, then read the room for the sync: a step the teacher took
        # between the read above and the subscription was lost (the phone stayed a step
        # behind), and one taken after it could reach the phone before a sync read before
        # it. The conn holds what the bus says until its sync is out (Conn.release).
        try:
            await self.rooms.hub.attach(self.conn)
        except BusError as exc:  # Redis away: this socket closes, room.js retries
            log.warning("room %s: %s", msg.code, exc)
            self.conn = None
            await self.error("unavailable", "the room cannot be reached now; retrying")
            return False
        await self.sync(await self.service.meta(msg.code))
        return True

    async def sync(self, meta: RoomMeta | None) -> None:
        """Everything up to the teacher's step; a phone that slept resumes here."""
        assert self.conn is not None
        conn, hub, renderer = self.conn, self.rooms.hub, self.rooms.renderer
        recording = await self.service.recording(meta.code) if meta is not None else None
        if meta is None or recording is None:
            await conn.release(Outgoing(dumps({"type": "gone"})))
            return
        events = recording.events
        poll = meta.current()
        poll_html, mine = "", None
        if poll is not None:
            answers = await self.service.answers(meta.code, poll.id)
            if conn.student is not None and conn.student.id in answers:
                mine = int(answers[conn.student.id])
            counts = tally(poll, answers) if conn.role == "teacher" or poll.revealed else None
            poll_html = renderer.poll(poll, events, conn.lang, conn.role, counts=counts, mine=mine)
        results = ""
        if meta.ended:
            rows = results_for(renderer, meta, await self.service.all_answers(meta), conn)
            results = renderer.results(meta, conn.lang, rows)
        sync = dumps(
            {
                "type": "sync",
                "role": conn.role,
                "step": meta.step,
                "total": meta.total,
                "panel": events[meta.step - 1].panel if meta.step else 0,
                "locked": meta.locked,
                "ended": meta.ended,
                "joined": await self.service.joined(meta.code),
                "html": hub.log_html(events, meta.step, conn.lang),
                "poll": poll.id if poll else None,
                "poll_state": ("reveal" if poll.revealed else "poll") if poll else None,
                "poll_html": poll_html,
                "answered": mine,
                "results_html": results,
                "nick": conn.student.nick if conn.student else None,
            }
        )
        await conn.release(Outgoing(sync))
        hub.ahead(meta.code, events, meta.step, conn.lang)

    # -- the teacher --------------------------------------------------------------------
    async def teacher(self, msg: Any) -> None:
        assert self.conn is not None
        meta = await self.service.meta(self.conn.code)
        if meta is None:
            await self.reply({"type": "gone"})
            return
        event: dict[str, Any] | None = None
        if isinstance(msg, Next):
            if meta.step >= meta.total:
                await self.reply({"type": "end_of_run", "step": meta.step, "total": meta.total})
                return
            meta.step += 1
            event = {"t": "step", "step": meta.step}
        elif isinstance(msg, Back):
            meta.step = max(0, meta.step - 1)
            event = {"t": "back", "step": meta.step}
        elif isinstance(msg, Goto):
            meta.step = min(msg.step, meta.total)
            event = {"t": "log", "step": meta.step}
        elif isinstance(msg, Lock):
            meta.locked = msg.on
            event = {"t": "lock"}
        elif isinstance(msg, End):
            meta.ended, meta.locked = True, True
            event = {"t": "end"}
        elif isinstance(msg, OpenPoll):
            poll = await self.build_poll(meta, msg)
            if poll is None:
                return
            open_poll(meta, poll)
            event = {"t": "poll", "id": poll.id}
        elif isinstance(msg, Reveal):
            poll = meta.current()
            if poll is None:
                await self.error("no_poll", "no question is open")
                return
            poll.revealed = True
            event = {"t": "reveal", "id": poll.id}
        elif isinstance(msg, Unpoll):
            meta.poll = None
            event = {"t": "unpoll"}
        await self.service.save(meta)
        if event is not None:
            await self.service.publish(meta.code, event)

    async def build_poll(self, meta: RoomMeta, msg: OpenPoll) -> Any:
        if meta.ended:
            await self.error("ended", "the class has ended")
            return None
        poll_id = next_poll_id(meta)
        if msg.kind == "predict":
            recording = await self.service.recording(meta.code)
            assert recording is not None
            # Each choice is judged by replaying the run into a real core: off the loop.
            poll = await asyncio.to_thread(
                predict_poll, poll_id, recording.events, meta.step, f"{meta.code}:{poll_id}"
            )
            if poll is None:
                await self.error("no_line", "no client line is left after this step")
            return poll
        study = self.rooms.study
        scenario = self.rooms.flow.scenarios[meta.slug]
        allowed = {q.id: q for q in exam_questions(study.content, scenario.topics)}
        question = allowed.get(msg.question or "")
        if question is None:
            await self.error("no_question", "pick a question on this scenario's topics")
            return None
        return exam_poll(poll_id, question, meta.step)

    # -- a student ----------------------------------------------------------------------
    async def answer(self, msg: AnswerMsg) -> None:
        assert self.conn is not None and self.conn.student is not None
        meta = await self.service.meta(self.conn.code)
        if meta is None:
            await self.reply({"type": "gone"})
            return
        status = await self.service.answer(meta, self.conn.student, msg.poll, msg.choice)
        learner = self.conn.student.learner
        poll = meta.current()
        if status == "ok" and learner and poll is not None:
            # Written before the reply: "answered" means it is in the student's progress.
            await self.record_for_me(meta, poll, learner, msg.choice)
        await self.reply(
            {"type": "answered", "poll": msg.poll, "choice": msg.choice, "status": status}
        )
        if status == "ok":
            await self.service.publish(meta.code, {"t": "tally"})

    async def record_for_me(self, meta: RoomMeta, poll: Any, learner: str, choice: int) -> None:
        """Counted in the student's own progress (/me): they opted in when joining."""
        study = self.rooms.study
        item = poll.qid or f"predict:{meta.slug}:{poll.point}"
        # Through the database's own threads, as every request's store work goes
        # (db.Database.call): their connections, not one more per default-executor thread.
        await study.db.call(
            study.store.record_room_answer,
            learner,
            item[:60],
            poll.kind,
            poll.label("ja", choice)[:200],
            poll.right[choice],
            f"room:{meta.code}:{meta.created:.0f}:{poll.id}"[:40],
            utcnow(),
        )

    # -- the loop -----------------------------------------------------------------------
    async def handle(self, raw: str | bytes) -> bool:
        """False when the socket should close."""
        if not self.bucket.allow("socket"):
            await self.error("slow_down", "too many messages; wait a moment")
            return self.strikes < MAX_STRIKES
        try:
            msg = parse(raw)
        except BadMessage as exc:
            await self.error("bad_message", str(exc))
            return self.strikes < MAX_STRIKES
        if isinstance(msg, Hello):
            if self.conn is not None:
                await self.error("bad_message", "hello was already sent")
                return True
            return await self.hello(msg)
        if self.conn is None:
            await self.error("no_room", "send a hello message first")
            return self.strikes < MAX_STRIKES
        if isinstance(msg, AnswerMsg):
            if self.conn.role != "student":
                await self.error("not_student", "only students answer")
            else:
                await self.answer(msg)
        elif self.conn.role != "teacher":
            await self.error("not_teacher", "only the teacher drives the room")
        else:
            await self.teacher(msg)
        return self.strikes < MAX_STRIKES


@router.websocket("/ws/room")
async def room_socket(ws: WebSocket) -> None:
    rooms: Rooms = ws.app.state.rooms
    await ws.accept(headers=[(b"x-mailflow-worker", str(os.getpid()).encode())])
    sock = RoomSocket(ws, rooms)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            if not await sock.handle(raw):
                await ws.close(code=1008)
                break
    except WebSocketDisconnect:
        pass
    finally:
        if sock.conn is not None:
            await rooms.hub.detach(sock.conn)

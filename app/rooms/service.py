"""Room state operations over the bus: create, join, step, poll, answer, report, expire.

Every process serving rooms goes through these, so one room works the same whether the
bus is this process's memory or a Redis shared by several web workers. Keys:

    room:{code}            the RoomMeta JSON (only the teacher's actions write it)
    room:{code}:rec        the recording, as JSON events
    room:{code}:students   hash: student id → {"nick", "learner"}
    room:{code}:a:{poll}   hash: student id → chosen index (first answer wins)
    room:{code}:gate       hash: "join" → open | locked | ended, "poll" → the id of the
                           poll taking answers ("-": none); written with every teacher
                           change, read by the atomic join and answer (bus.hset_checked)
    channel room:{code}    what happened, e.g. {"t": "step", "step": 5}

Every key carries the room's TTL (3 hours), renewed by activity: when it lapses the
nicknames and answers are gone with the room.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from app.bus import Bus
from app.events import Event
from app.rooms.codes import new_code
from app.rooms.model import Poll, RoomMeta
from app.scenarios.recording import Recording

ROOM_TTL = 3 * 3600.0
TOUCH_EVERY = 60.0  # students' answers renew the room at most this often per process
RECORDINGS_CACHED = 64


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def student_id(token: str) -> str:
    # Derived from the secret cookie, never sent to anyone: nobody can answer for another.
    return hashlib.sha256(b"student:" + token.encode()).hexdigest()[:24]


def recording_bytes(recording: Recording) -> bytes:
    return json.dumps(
        {
            "slug": recording.slug,
            "lang": recording.lang,
            "started": recording.started,
            "seconds": recording.seconds,
            "events": [e.to_json() for e in recording.events],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def recording_from(raw: bytes) -> Recording:
    data = json.loads(raw)
    events = tuple(Event(**e) for e in data["events"])
    return Recording(data["slug"], data["lang"], events, data["started"], data["seconds"])


@dataclass(frozen=True)
class Student:
    id: str
    nick: str
    learner: str | None  # the /me learner id when they opted in to count their answers


class JoinRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # gone | locked | ended | full


class RoomService:
    def __init__(self, bus: Bus, *, ttl: float = ROOM_TTL, max_students: int = 500) -> None:
        self.bus = bus
        self.ttl = ttl
        self.max_students = max_students
        self._recordings: OrderedDict[str, Recording] = OrderedDict()
        self._touched: dict[str, float] = {}

    # -- keys ---------------------------------------------------------------------------
    @staticmethod
    def key(code: str, part: str = "") -> str:
        return f"room:{code}:{part}" if part else f"room:{code}"

    def _keys(self, meta: RoomMeta) -> list[str]:
        return [
            self.key(meta.code),
            self.key(meta.code, "rec"),
            self.key(meta.code, "students"),
            self.key(meta.code, "gate"),
            *(self.key(meta.code, f"a:{p.id}") for p in meta.polls),
        ]

    # -- rooms --------------------------------------------------------------------------
    async def create(self, slug: str, recording: Recording) -> tuple[RoomMeta, str]:
        """A new room showing `recording`; returns it and the teacher's token."""
        token = secrets.token_urlsafe(24)
        rec = recording_bytes(recording)
        while True:
            meta = RoomMeta(
                code=new_code(),
                slug=slug,
                lang=recording.lang,
                teacher=token_hash(token),
                total=len(recording.events),
                created=time.time(),
            )
            if await self.bus.set_new(self.key(meta.code), meta.to_bytes(), self.ttl):
                break
        await self.bus.hset_all(self.key(meta.code, "gate"), gate(meta), self.ttl)
        await self.bus.set(self.key(meta.code, "rec"), rec, self.ttl)
        self._recordings[meta.code] = recording
        return meta, token

    async def meta(self, code: str) -> RoomMeta | None:
        raw = await self.bus.get(self.key(code))
        if raw is None:
            self._recordings.pop(code, None)
            self._touched.pop(code, None)
            return None
        return RoomMeta.from_bytes(raw)

    async def save(self, meta: RoomMeta) -> None:
        """Writes the teacher's change and renews every key of the room (activity).

        The gate first: from the moment it is written no worker admits a student into a
        locked room or takes an answer to a revealed poll, whatever meta it read before."""
        await self.bus.hset_all(self.key(meta.code, "gate"), gate(meta), self.ttl)
        await self.bus.set(self.key(meta.code), meta.to_bytes(), self.ttl)
        await self.bus.touch(self.ttl, *self._keys(meta)[1:])  # the gate again: harmless
        self._touched[meta.code] = time.monotonic()

    async def activity(self, meta: RoomMeta) -> None:
        last = self._touched.get(meta.code, 0.0)
        if time.monotonic() - last >= TOUCH_EVERY:
            self._touched[meta.code] = time.monotonic()
            await self.bus.touch(self.ttl, *self._keys(meta))

    async def publish(self, code: str, message: dict[str, Any]) -> None:
        await self.bus.publish(self.key(code), json.dumps(message).encode())

    async def recording(self, code: str) -> Recording | None:
        cached = self._recordings.get(code)
        if cached is not None:
            self._recordings.move_to_end(code)
            return cached
        raw = await self.bus.get(self.key(code, "rec"))
        if raw is None:
            return None
        recording = recording_from(raw)
        self._recordings[code] = recording
        while len(self._recordings) > RECORDINGS_CACHED:
            self._recordings.popitem(last=False)
        return recording

    @staticmethod
    def is_teacher(meta: RoomMeta, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token_hash(token or ""), meta.teacher)

    # -- students -----------------------------------------------------------------------
    async def join(self, meta: RoomMeta, nick: str, learner: str | None) -> tuple[Student, str]:
        """A new student; returns them and their secret token (their cookie)."""
        if meta.ended:
            raise JoinRefused("ended")
        if meta.locked:
            raise JoinRefused("locked")
        # The cap, the lock and the add in one atomic step (bus.hset_checked): joins on
        # several workers at once admit exactly max_students, never one more.
        value = json.dumps({"nick": nick, "learner": learner}, ensure_ascii=False).encode()
        while True:
            token = secrets.token_urlsafe(24)
            student = Student(student_id(token), nick, learner)
            result = await self.bus.hset_checked(
                self.key(meta.code, "students"),
                student.id,
                value,
                self.ttl,
                cap=self.max_students,
                gate=(self.key(meta.code, "gate"), "join", "open"),
            )
            if result == "ok":
                break
            if result == "full":
                raise JoinRefused("full")
            if result.startswith("shut:"):
                raise JoinRefused("ended" if result == "shut:ended" else "locked")
            # "exists": a fresh 192-bit token met another student's id; draw again.
        await self.activity(meta)
        return student, token

    async def student(self, code: str, token: str | None) -> Student | None:
        if not token:
            return None
        sid = student_id(token)
        raw = await self.bus.hget(self.key(code, "students"), sid)
        if raw is None:
            return None
        data = json.loads(raw)
        return Student(sid, data["nick"], data.get("learner"))

    async def joined(self, code: str) -> int:
        return await self.bus.hlen(self.key(code, "students"))

    async def students(self, code: str) -> dict[str, Student]:
        raw = await self.bus.hgetall(self.key(code, "students"))
        out = {}
        for sid, value in raw.items():
            data = json.loads(value)
            out[sid] = Student(sid, data["nick"], data.get("learner"))
        return out

    # -- answers ------------------------------------------------------------------------
    async def answer(self, meta: RoomMeta, student: Student, poll_id: int, choice: int) -> str:
        """ok | closed (not the open poll, or revealed) | bad (no such choice) | twice."""
        poll = meta.current()
        if poll is None or poll.id != poll_id or poll.revealed or meta.ended:
            return "closed"
        if not 0 <= choice < len(poll.right):
            return "bad"
        key = self.key(meta.code, f"a:{poll.id}")
        # One step on the bus: refused once the teacher revealed or closed the poll (the
        # gate), even if this worker read the meta before; the first answer wins.
        result = await self.bus.hset_checked(
            key,
            student.id,
            str(choice).encode(),
            self.ttl,
            gate=(self.key(meta.code, "gate"), "poll", str(poll.id)),
        )
        if result == "exists":
            return "twice"
        if result != "ok":
            return "closed"
        await self.activity(meta)
        return "ok"

    async def answers(self, code: str, poll_id: int) -> dict[str, bytes]:
        return await self.bus.hgetall(self.key(code, f"a:{poll_id}"))

    async def my_answer(self, code: str, poll_id: int, sid: str) -> int | None:
        raw = await self.bus.hget(self.key(code, f"a:{poll_id}"), sid)
        return int(raw) if raw is not None else None

    async def all_answers(self, meta: RoomMeta) -> dict[int, dict[str, bytes]]:
        return {p.id: await self.answers(meta.code, p.id) for p in meta.polls}

    async def delete(self, meta: RoomMeta) -> None:
        await self.bus.delete(*self._keys(meta))
        self._recordings.pop(meta.code, None)
        self._touched.pop(meta.code, None)


def gate(meta: RoomMeta) -> dict[str, bytes]:
    """What the atomic join and answer check (see the keys above)."""
    join = "ended" if meta.ended else "locked" if meta.locked else "open"
    poll = meta.current()
    taking = str(poll.id) if poll is not None and not poll.revealed and not meta.ended else "-"
    return {"join": join.encode(), "poll": taking.encode()}


def next_poll_id(meta: RoomMeta) -> int:
    return max((p.id for p in meta.polls), default=0) + 1


def open_poll(meta: RoomMeta, poll: Poll) -> None:
    meta.polls.append(poll)
    meta.poll = poll.id

"""Classroom rooms through the real app: real HTTP, real websockets, real recordings,
on the embedded in-memory bus and on a real redis-server (Debian's package)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_server import RedisServer
from rooms_client import RoomSocket, cookie_header, create_room, join_room
from served import Served
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.bus.memory import MemoryBus
from app.rooms.codes import ALPHABET, clean_nick, new_code, normalize_code
from app.rooms.service import RoomService
from app.scenarios.runner import Recording


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="module", params=["memory", "redis"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           redis_url: str) -> Iterator[Served]:
    url = redis_url if request.param == "redis" else ""
    s = Served(tmp_path_factory.mktemp(f"rooms-{request.param}"), redis_url=url).start()
    yield s
    s.stop()


def test_codes_avoid_look_alike_characters() -> None:
    assert not set("01OI") & set(ALPHABET)
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and set(c) <= set(ALPHABET) for c in codes)
    assert normalize_code("abc-def".replace("c", "k")) == "ABKDEF"
    assert normalize_code("ABCDE0") is None


def test_nicknames_are_cleaned_and_limited() -> None:
    assert clean_nick("  ", "ja")  # a friendly default, never empty
    assert clean_nick("a\u202eexe.txt", "en") == "aexe.txt"  # no RLO trick
    assert len(clean_nick("x" * 300, "en")) == 20


async def _poll_round(s: Served) -> None:
    code, teacher = create_room(s.url)
    students = [join_room(s.url, code, nick=f"student{i}") for i in range(3)]
    ts = await RoomSocket.open(s.url, teacher, code, "teacher")
    sync = await ts.until("sync")
    assert sync["role"] == "teacher" and sync["step"] == 0 and sync["joined"] == 3
    ss = [await RoomSocket.open(s.url, c, code, "student") for c in students]
    for n, sock in enumerate(ss):
        assert (await sock.until("sync"))["nick"] == f"student{n}"
    for step in (1, 2, 3):
        await ts.send(type="next")
        for sock in ss:
            msg = await sock.until("step")
            assert msg["step"] == step and f'id="ev-{step}"' in msg["html"]
    # A phone that slept: its socket closes, the teacher goes on, it comes back in sync.
    await ss[2].close()
    await ts.send(type="next")
    await ss[0].until("step")
    ss[2] = await RoomSocket.open(s.url, students[2], code, "student")
    again = await ss[2].until("sync")
    assert again["step"] == 4 and again["html"].count('class="ev ') == 4

    await ts.send(type="poll", kind="predict")
    opened = await ts.until("poll")
    polls = [await sock.until("poll") for sock in ss]
    assert all(p["poll"] == opened["poll"] for p in polls)
    poll_id = opened["poll"]
    choices = re.findall(r'data-choice="(\d)"', polls[0]["html"])
    assert len(choices) >= 3
    await ss[0].send(type="answer", poll=poll_id, choice=0)
    assert (await ss[0].until("answered"))["status"] == "ok"
    await ss[0].send(type="answer", poll=poll_id, choice=1)
    assert (await ss[0].until("answered"))["status"] == "twice"  # the first answer stands
    await ss[1].send(type="answer", poll=poll_id, choice=1)
    await ss[2].send(type="answer", poll=poll_id, choice=1)
    for sock in ss[1:]:
        assert (await sock.until("answered"))["status"] == "ok"
    while (await ts.until("tally"))["answered"] < 3:
        pass
    await ts.send(type="reveal")
    revealed = [await sock.until("reveal") for sock in ss]
    assert "✔" in revealed[0]["html"]  # the distribution and the right answers
    await ss[1].send(type="answer", poll=poll_id, choice=0)
    assert (await ss[1].until("answered"))["status"] == "closed"

    await ts.send(type="end")
    results = [await sock.until("ended") for sock in ss]
    assert all("room-results" in r["html"] for r in results)
    csv = teacher.get(f"/classroom/{code}/report.csv").text.lstrip("\ufeff").splitlines()
    assert csv[0].startswith("question_no,kind,question,answered,right,share_right_pct")
    assert csv[1].startswith("1,predict,")
    assert ",3," in csv[1]
    for sock in [ts, *ss]:
        await sock.close()


def test_a_poll_end_to_end(served: Served) -> None:
    asyncio.run(_poll_round(served))


async def _roles(s: Served) -> None:
    code, teacher = create_room(s.url)
    student = join_room(s.url, code)
    page = student.get(f"/r/{code}").text
    token = teacher.cookies.get(f"mft_{code}")
    assert token and token not in page and token not in cookie_header(student)
    sock = await RoomSocket.open(s.url, student, code, "student")
    await sock.until("sync")
    await sock.send(type="next")
    assert (await sock.until("error"))["code"] == "not_teacher"
    await sock.send(type="poll", kind="predict")
    assert (await sock.until("error"))["code"] == "not_teacher"
    await sock.close()
    # A student's cookie does not make a teacher, even when asking to be one.
    fake = await RoomSocket.open(s.url, student, code, "teacher")
    assert (await fake.until("error"))["code"] == "not_teacher"
    await fake.close()
    assert student.get(f"/classroom/{code}").status_code == 403
    assert student.get(f"/classroom/{code}/report.csv").status_code == 403


def test_students_cannot_drive_and_never_see_the_teacher_token(served: Served) -> None:
    asyncio.run(_roles(served))


def test_room_socket_from_another_origin_is_refused(served: Served) -> None:
    _code, teacher = create_room(served.url)

    async def attempt() -> None:
        url = served.url.replace("http://", "ws://") + "/ws/room"
        headers = {"Cookie": cookie_header(teacher), "Origin": "http://evil.example"}
        with pytest.raises(InvalidStatus) as err:
            await connect(url, additional_headers=headers)
        assert err.value.response.status_code == 403

    asyncio.run(attempt())


def test_locked_room_refuses_new_students(served: Served) -> None:
    code, teacher = create_room(served.url)

    async def lock() -> None:
        ts = await RoomSocket.open(served.url, teacher, code, "teacher")
        await ts.until("sync")
        await ts.send(type="lock", on=True)
        await ts.until("lock")
        await ts.close()

    asyncio.run(lock())
    late = httpx.Client(base_url=served.url)
    page = late.post(f"/r/{code}", data={"nick": "late"})
    assert page.status_code == 409 and "締め切" in page.text


def test_every_response_names_its_worker(served: Served) -> None:
    import os

    r = httpx.get(served.url + "/join")
    assert r.status_code == 200
    assert r.headers["x-mailflow-worker"] == str(os.getpid())  # served in this process
    assert httpx.get(served.url + "/r/ZZZZZZ").headers["x-mailflow-worker"]


def test_nickname_is_escaped_on_every_page(served: Served) -> None:
    code, _teacher = create_room(served.url)
    student = join_room(served.url, code, nick="<b>x</b>&<script>")
    page = student.get(f"/r/{code}").text
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_exam_question_from_the_bank(served: Served) -> None:
    code, teacher = create_room(served.url, slug="basic-pop3", lang="en")
    console = teacher.get(f"/classroom/{code}?lang=en").text
    qids = re.findall(r'<option value="([^"]+)"', console.split("data-question")[1])
    assert qids, "the scenario's topics have questions in the bank"
    student = join_room(served.url, code)

    async def ask() -> None:
        ts = await RoomSocket.open(served.url, teacher, code, "teacher", lang="en")
        ss = await RoomSocket.open(served.url, student, code, "student", lang="en")
        await ts.until("sync")
        await ss.until("sync")
        await ts.send(type="poll", kind="exam", question="not-a-question")
        assert (await ts.until("error"))["code"] == "no_question"
        await ts.send(type="poll", kind="exam", question=qids[0])
        poll = await ss.until("poll")
        await ss.send(type="answer", poll=poll["poll"], choice=0)
        await ss.until("answered")
        await ts.send(type="reveal")
        shown = await ss.until("reveal")
        assert "poll-explain" in shown["html"]
        await ts.close()
        await ss.close()

    asyncio.run(ask())


def test_opted_in_answers_count_in_my_progress(served: Served) -> None:
    code, teacher = create_room(served.url)
    student = join_room(served.url, code, count_me=True)
    before = student.get("/api/me/progress").json()["answered"]

    async def answer() -> None:
        ts = await RoomSocket.open(served.url, teacher, code, "teacher")
        ss = await RoomSocket.open(served.url, student, code, "student")
        await ts.until("sync")
        await ss.until("sync")
        await ts.send(type="poll", kind="predict")
        poll = await ss.until("poll")
        await ss.send(type="answer", poll=poll["poll"], choice=0)
        await ss.until("answered")
        await ts.send(type="end")  # ends after the answer was written
        await ss.until("ended")
        await ts.close()
        await ss.close()

    # The write runs on the database's own threads (db.Database.call), as every request's
    # store work does, not on the loop's default executor with a connection of its own.
    db = served.app.state.study.db
    writers: list[str] = []
    db.trace = lambda sql: (
        writers.append(threading.current_thread().name) if "INSERT INTO answer" in sql else None
    )
    try:
        asyncio.run(answer())
    finally:
        db.trace = None
    assert writers and all(name.startswith("study-db") for name in writers), writers
    assert student.get("/api/me/progress").json()["answered"] == before + 1
    me = student.get("/me")
    assert me.status_code == 200
    # The progress file carries the room answer and reads back in (export → import).
    exported = student.get("/me/export")
    assert '"mode": "room"' in exported.text
    back = student.post("/me/import", files={"file": ("p.json", exported.content)},
                        follow_redirects=False)
    assert back.status_code == 303, back.text[:300]
    assert student.get("/api/me/progress").json()["answered"] == before + 1


def test_join_rate_and_room_size_are_limited(tmp_path: Path) -> None:
    s = Served(tmp_path, room_join_rate=6, room_max_students=2).start()
    try:
        code, _ = create_room(s.url)  # creating costs 5 of the address's 6
        join_room(s.url, code)
        refused = httpx.post(f"{s.url}/r/{code}", data={"nick": "x"})
        assert refused.status_code == 429 and refused.headers["retry-after"]
    finally:
        s.stop()
    s = Served(tmp_path / "b", room_max_students=2).start()
    try:
        code, _ = create_room(s.url)
        join_room(s.url, code)
        join_room(s.url, code)
        full = httpx.post(f"{s.url}/r/{code}", data={"nick": "x"})
        assert full.status_code == 409 and "満員" in full.text
    finally:
        s.stop()


def test_rooms_expire_with_their_nicknames_and_answers(
    scenario_recording: object,
) -> None:
    now = [1000.0]
    bus = MemoryBus(clock=lambda: now[0])
    service = RoomService(bus, ttl=3 * 3600.0)
    recording: Recording = scenario_recording("basic-pop3")  # type: ignore[operator]

    async def run() -> None:
        meta, _token = await service.create("basic-pop3", recording)
        student, _ = await service.join(meta, "ペンギン", None)
        from app.rooms.polls import predict_poll
        from app.rooms.service import open_poll

        poll = predict_poll(1, recording.events, 0, "seed")
        assert poll is not None
        open_poll(meta, poll)
        await service.save(meta)
        assert await service.answer(meta, student, 1, 0) == "ok"
        now[0] += 2 * 3600.0  # activity within 3 hours keeps the room
        await service.save(meta)
        now[0] += 2.5 * 3600.0
        assert await service.meta(meta.code) is not None
        now[0] += 0.6 * 3600.0  # 3 hours after the last activity
        assert bus.sweep() > 0
        assert await service.meta(meta.code) is None
        assert await service.students(meta.code) == {}
        assert await service.answers(meta.code, 1) == {}
        assert len(bus) == 0

    asyncio.run(run())


def test_a_flood_of_messages_is_slowed_then_closed(served: Served) -> None:
    code, _teacher = create_room(served.url)
    student = join_room(served.url, code)

    async def flood() -> None:
        sock = await RoomSocket.open(served.url, student, code, "student")
        await sock.until("sync")
        for _ in range(60):  # far over 10 a second after a burst of 20
            await sock.send(type="answer", poll=1, choice=0)
        codes = []
        try:
            while True:
                msg = await sock.recv()
                if msg["type"] == "error":
                    codes.append(msg["code"])
        except Exception:  # the server closed the socket (1008)
            pass
        assert "slow_down" in codes
        assert sock.ws.close_code == 1008

    asyncio.run(flood())


def _stage_block(page: str) -> str:
    start = page.index('<div class="stage-wrap" id="stage" data-stage-wrap>')
    return page[start:page.index('<p class="sr" id="stage-live"', start)]


async def _one_stage(s: Served) -> None:
    code, teacher = create_room(s.url)
    early = join_room(s.url, code, nick="early")
    before = _stage_block(early.get(f"/r/{code}").text)
    ts = await RoomSocket.open(s.url, teacher, code, "teacher")
    await ts.until("sync")
    for step in (1, 2):
        await ts.send(type="next")
        assert (await ts.until("step"))["step"] == step
    await ts.close()
    late = join_room(s.url, code, nick="late")
    blocks = {
        _stage_block(early.get(f"/r/{code}").text),
        _stage_block(late.get(f"/r/{code}").text),
        _stage_block(teacher.get(f"/classroom/{code}").text),
    }
    # One rendering for the room's run, whatever the step: the page script moves it.
    assert blocks == {before}
    assert 'data-stage="full"' in before and 'data-stage="compact"' in before
    assert '<script type="application/json" id="stage-moves">' in before
    assert "style=" not in before  # the strict CSP: no inline styles


def test_the_stage_is_rendered_once_for_the_room(served: Served) -> None:
    asyncio.run(_one_stage(served))



async def _a_step_while_a_phone_says_hello(s: Served) -> None:
    """The teacher steps while a phone's socket is between its hello and its sync: just
    before it subscribes to the room, then (another phone) just after. Either way the phone
    must end on the teacher's step (it once stayed behind: the sync was read before the
    subscription, so the step was lost, or the step overtook that stale sync and the sync
    took the phone back)."""
    code, teacher = create_room(s.url)
    ts = await RoomSocket.open(s.url, teacher, code, "teacher")
    await ts.until("sync")
    hub = s.app.state.rooms.hub
    attach = hub.attach
    test_loop = asyncio.get_running_loop()
    subscribed = False
    at_hello = asyncio.Event()  # on this loop
    release: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []  # the server's

    async def attach_at_the_step(conn: Any) -> None:
        # The real attach, with the teacher's step before or after it (held here, on the
        # server's loop, until the test has seen the teacher's step go out).
        if conn.role != "student":
            return await attach(conn)
        if subscribed:
            await attach(conn)
        go = asyncio.Event()
        release.append((asyncio.get_running_loop(), go))
        test_loop.call_soon_threadsafe(at_hello.set)
        await go.wait()
        if not subscribed:
            await attach(conn)

    hub.attach = attach_at_the_step  # this instance only, for this test
    step, phones = 0, []
    seen: dict[str, tuple[int | None, int]] = {}  # the phone's step, the teacher's
    try:
        for subscribed in (False, True):
            at_hello.clear()
            release.clear()
            ss = await RoomSocket.open(s.url, join_room(s.url, code), code, "student")
            phones.append(ss)
            await at_hello.wait()
            await ts.send(type="next")
            step += 1
            assert (await ts.until("step"))["step"] == step  # saved and published
            server_loop, go = release[0]
            server_loop.call_soon_threadsafe(go.set)
            # The step the phone shows once its sync is in and everything sent before the
            # teacher's next step is in (that step closes the socket's earlier messages).
            shown, synced = None, False
            while True:
                msg = await ss.recv()
                if msg["type"] == "step" and msg["step"] == step + 1:
                    break
                if msg["type"] in ("sync", "step", "back", "log"):
                    shown = msg["step"]
                if msg["type"] == "sync":
                    synced = True
                    await ts.send(type="next")  # the phone hears the room now, whatever the code
            assert synced
            seen["after" if subscribed else "before"] = (shown, step)
            step += 1
            assert (await ts.until("step"))["step"] == step
    finally:
        del hub.attach
    for sock in (ts, *phones):
        await sock.close()
    assert seen == {"before": (1, 1), "after": (3, 3)}


@pytest.mark.parametrize("bus", ["memory", "redis"])
def test_a_step_taken_while_a_phone_says_hello_reaches_it(tmp_path: Path, redis_url: str,
                                                          bus: str) -> None:
    # A server of its own: the module's has spent its joins per minute on the tests above.
    s = Served(tmp_path, redis_url=redis_url if bus == "redis" else "").start()
    try:
        asyncio.run(_a_step_while_a_phone_says_hello(s))
    finally:
        s.stop()

"""One room served by two web workers (`MAILFLOW_WEB_WORKERS=2`) through a real Redis:
the teacher's worker publishes, every worker fans out to its own students."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from redis_server import RedisServer
from rooms_client import RoomSocket, create_room, join_room
from workers import Workers


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    w = Workers(tmp_path_factory.mktemp("workers"), redis.url, count=2)
    yield w
    w.stop()
    redis.stop()


def test_two_workers_answer_on_one_port(workers: Workers) -> None:
    seen = set()
    for _ in range(200):  # a bound, not a wait: stop as soon as both have answered
        with httpx.Client() as client:  # a new connection each time
            seen.add(client.get(workers.url + "/join").headers["x-mailflow-worker"])
        if len(seen) == 2:
            break
    assert len(seen) == 2, seen


async def _room_across_workers(w: Workers) -> None:
    code, teacher = create_room(w.url)
    ts = await RoomSocket.open(w.url, teacher, code, "teacher")
    await ts.until("sync")
    teacher_worker = ts.ws.response.headers["x-mailflow-worker"]
    # Students until at least two sit on a worker other than the teacher's.
    students, elsewhere = [], 0
    for n in range(60):
        client = join_room(w.url, code, nick=f"s{n}")
        sock = await RoomSocket.open(w.url, client, code, "student")
        await sock.until("sync")
        students.append(sock)
        elsewhere += sock.ws.response.headers["x-mailflow-worker"] != teacher_worker
        if elsewhere >= 2 and len(students) >= 4:
            break
    assert elsewhere >= 2
    for step in range(1, 6):
        await ts.send(type="next")
        for sock in students:
            msg = await sock.until("step")
            assert msg["step"] == step  # every student gets every step, in order
    await ts.send(type="poll", kind="predict")
    polls = [(await sock.until("poll"))["poll"] for sock in students]
    poll = polls[0]
    assert set(polls) == {poll}
    for sock in students:
        await sock.send(type="answer", poll=poll, choice=0)
        assert (await sock.until("answered"))["status"] == "ok"
    while (await ts.until("tally"))["answered"] < len(students):
        pass
    for sock in [ts, *students]:
        await sock.close()


def test_one_room_across_two_workers(workers: Workers) -> None:
    asyncio.run(_room_across_workers(workers))


def test_every_worker_serves_the_lab_page_of_the_one_lab(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from served import free_lab_offset

    redis = RedisServer(tmp_path_factory.mktemp("redis-lab"))
    offset = free_lab_offset()
    w = Workers(tmp_path_factory.mktemp("workers-lab"), redis.url, count=2,
                MAILFLOW_LAB="1", MAILFLOW_LAB_OFFSET=str(offset))
    try:
        served_by, pages = set(), set()
        for _ in range(200):  # a bound: stop once both workers have taken a connection
            with httpx.Client() as client:
                served_by.add(client.get(w.url + "/join").headers["x-mailflow-worker"])
                lab = client.get(w.url + "/lab")
                assert lab.status_code == 200
                assert str(587 + offset) in lab.text  # the running lab's real ports
                pages.add(lab.headers["x-mailflow-worker"])
                ca = client.get(w.url + "/lab/mailflow-ca.pem")
                assert ca.status_code == 200 and b"BEGIN CERTIFICATE" in ca.content
            if len(served_by) == 2:
                break
        assert len(served_by) == 2
        assert len(pages) == 1  # always answered by the worker that runs the lab
    finally:
        w.stop()
        redis.stop()

"""A room's cap, its lock and "one answer each" hold exactly under concurrency: joins
and answers racing on several workers (each its own RoomService and Redis connection
pool, or two real `python -m app` workers) against one real redis-server, and many
concurrent joins on the in-memory bus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis_server import RedisServer
from rooms_client import RoomSocket, cookie_header, create_room
from workers import Workers

from app.bus import Bus
from app.bus.memory import MemoryBus
from app.bus.redis import RedisBus
from app.rooms.model import RoomMeta
from app.rooms.polls import predict_poll
from app.rooms.service import JoinRefused, RoomService, open_poll
from app.scenarios.recording import Recording

CAP = 5


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis-cap"))
    yield server.url
    server.stop()


def _buses(kind: str, url: str, n: int) -> list[Bus]:
    if kind == "memory":
        return [MemoryBus()] * n  # one process: every "worker" shares the one bus
    return [RedisBus(url) for _ in range(n)]  # a connection pool per worker


async def _close(buses: list[Bus]) -> None:
    for bus in set(buses):
        await bus.close()


async def _join(service: RoomService, meta: RoomMeta, n: int) -> str:
    try:
        await service.join(meta, f"s{n}", None)
    except JoinRefused as exc:
        return exc.code
    return "ok"


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_concurrent_joins_admit_exactly_the_cap(
    kind: str, redis_url: str, scenario_recording: Callable[[str], Recording]
) -> None:
    recording = scenario_recording("basic-pop3")

    async def run() -> None:
        buses = _buses(kind, redis_url, 4)
        workers = [RoomService(b, max_students=CAP) for b in buses]
        meta, _ = await workers[0].create("basic-pop3", recording)
        metas = [await w.meta(meta.code) for w in workers]  # each worker read "0 of 5"
        results = await asyncio.gather(
            *(_join(workers[n % 4], metas[n % 4], n) for n in range(20))  # type: ignore[arg-type]
        )
        assert results.count("ok") == CAP, results
        assert results.count("full") == 20 - CAP, results
        assert await workers[-1].joined(meta.code) == CAP
        await _close(buses)

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_lock_and_end_hold_against_a_worker_that_read_the_room_before(
    kind: str, redis_url: str, scenario_recording: Callable[[str], Recording]
) -> None:
    recording = scenario_recording("basic-pop3")

    async def run() -> None:
        buses = _buses(kind, redis_url, 2)
        teacher, other = RoomService(buses[0]), RoomService(buses[-1])
        meta, _ = await teacher.create("basic-pop3", recording)
        stale = await other.meta(meta.code)  # read while the room was open
        assert stale is not None and not stale.locked
        meta.locked = True
        await teacher.save(meta)
        with pytest.raises(JoinRefused) as refused:
            await other.join(stale, "late", None)
        assert refused.value.code == "locked"
        meta.locked = False  # unlocked: the same stale read joins again
        await teacher.save(meta)
        await other.join(stale, "now", None)
        meta.ended = meta.locked = True
        await teacher.save(meta)
        with pytest.raises(JoinRefused) as refused:
            await other.join(stale, "after", None)
        assert refused.value.code == "ended"
        assert await other.joined(meta.code) == 1
        await _close(buses)

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_answers_race_and_reveal_across_workers(
    kind: str, redis_url: str, scenario_recording: Callable[[str], Recording]
) -> None:
    recording = scenario_recording("basic-pop3")

    async def run() -> None:
        buses = _buses(kind, redis_url, 4)
        workers = [RoomService(b) for b in buses]
        teacher = workers[0]
        meta, _ = await teacher.create("basic-pop3", recording)
        student, _ = await teacher.join(meta, "s", None)
        late, _ = await teacher.join(meta, "late", None)
        poll = predict_poll(1, recording.events, 0, "seed")
        assert poll is not None
        open_poll(meta, poll)
        await teacher.save(meta)
        metas = [await w.meta(meta.code) for w in workers]
        # The same student answers from every worker at once: exactly one answer counts.
        choices = [n % len(poll.right) for n in range(12)]
        statuses = await asyncio.gather(
            *(
                workers[n % 4].answer(metas[n % 4], student, poll.id, c)  # type: ignore[arg-type]
                for n, c in enumerate(choices)
            )
        )
        assert statuses.count("ok") == 1 and statuses.count("twice") == 11, statuses
        kept = choices[statuses.index("ok")]
        assert await teacher.my_answer(meta.code, poll.id, student.id) == kept
        # Revealed on the teacher's worker: a worker holding the open poll takes no more.
        meta.polls[-1].revealed = True
        await teacher.save(meta)
        assert await workers[1].answer(metas[1], late, poll.id, 0) == "closed"  # type: ignore[arg-type]
        assert list(await teacher.answers(meta.code, poll.id)) == [student.id]
        await _close(buses)

    asyncio.run(run())


@pytest.fixture(scope="module")
def capped_workers(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Workers]:
    w = Workers(
        tmp_path_factory.mktemp("workers-cap"), redis_url, count=2,
        MAILFLOW_ROOM_MAX_STUDENTS=str(CAP), MAILFLOW_ROOM_JOIN_RATE="1000",
    )
    yield w
    w.stop()


def test_two_real_workers_admit_exactly_the_cap(capped_workers: Workers, tmp_path: Path) -> None:
    base = capped_workers.url
    code, _teacher = create_room(base)

    async def run() -> list[httpx.Response]:
        # Ten kept-alive connections on each worker (a bound, not a wait: stop as soon
        # as both have ten), then all 20 joins at once, half of them on each worker.
        kept: dict[str, list[httpx.AsyncClient]] = {}
        for _ in range(400):
            client = httpx.AsyncClient(base_url=base, timeout=60)
            worker = (await client.get("/join")).headers["x-mailflow-worker"]
            if len(kept.setdefault(worker, [])) < 10:
                kept[worker].append(client)
            else:
                await client.aclose()
            if len(kept) == 2 and all(len(c) == 10 for c in kept.values()):
                break
        clients = [c for cs in kept.values() for c in cs]
        assert len(clients) == 20, {w: len(c) for w, c in kept.items()}
        answers = await asyncio.gather(
            *(c.post(f"/r/{code}", data={"nick": f"s{n}"}) for n, c in enumerate(clients))
        )
        for client in clients:
            await client.aclose()
        return list(answers)

    answers = asyncio.run(run())
    admitted = [r for r in answers if r.status_code == 303]
    refused = [r for r in answers if r.status_code == 409]
    assert len(admitted) == CAP and len(refused) == 20 - CAP, [r.status_code for r in answers]
    assert all("このルームは満員です。" in r.text for r in refused)
    assert len({r.headers["x-mailflow-worker"] for r in answers}) == 2  # both took joins
    en = httpx.post(f"{base}/r/{code}", params={"lang": "en"}, data={"nick": "x"})
    assert en.status_code == 409 and "This room is full." in en.text

    # An admitted student comes back (the form again, then the page and the socket):
    # never refused by the cap, never counted twice.
    seat = httpx.Client(base_url=base, timeout=60)
    seat.cookies.set(f"mfs_{code}", admitted[0].cookies[f"mfs_{code}"])
    again = seat.post(f"/r/{code}", data={"nick": "again"})
    assert again.status_code == 303, again.text[:300]
    assert seat.get(f"/r/{code}").status_code == 200

    async def sync() -> dict[str, object]:
        sock = await RoomSocket.open(base, seat, code, "student")
        msg = await sock.until("sync")
        await sock.close()
        return msg

    assert cookie_header(seat)
    assert asyncio.run(sync())["joined"] == CAP

"""Classroom room fan-out: one room, N students, the teacher sends `next`.

Latency of a step = the teacher's `next` sent → the last student's `step` event
received. Baseline in the same run: a bare Starlette broadcast (bench/broadcast_app.py)
of the same payload (the room's own step messages, byte for byte, as one extra student
received them) to the same number of websocket clients. Both sets of
clients stay connected and the two servers step in turn, so a busy moment of the shared
machine falls on both alike. Memory: the
server's RSS after all students are connected minus before, per student (for workers,
summed over the worker processes). Every process runs on loopback; every loop is
bounded. The students use bench/lean_ws.py (it offers permessage-deflate as browsers
do, so the server's work is what phones cause); --deflate sets both servers' compression.

    .venv/bin/python bench/bench_rooms.py --students 300 --steps 40 --clients 2
    .venv/bin/python bench/bench_rooms.py --students 1000 --clients 2 [--deflate off]
    .venv/bin/python bench/bench_rooms.py --students 1000 --clients 2 --workers 2   # redis
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port, percentile, rss_kib, start_process, wait_for_port
from lean_ws import LeanClient, open_lean
from websockets.asyncio.client import connect

CODE = re.compile(r'data-room-code="([A-Z2-9]{6})"')
STEP_GAP = 0.25  # seconds between the teacher's steps: every student has the last one first
OPEN_CONCURRENCY = 50


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def rss_total(pids: list[int]) -> int:
    return sum(rss_kib(p) for p in pids)


class Receiver:
    """One student on the `websockets` client: records when each step arrived (no JSON
    parsing on the hot path). The students use lean_ws.LeanClient unless --client
    websockets; the probe and the teacher always use this library."""

    def __init__(self, ws, marker: bytes | str) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.marker = marker
        self.times: list[float] = []
        self.frames: list[str] = []  # kept by the probe only
        self.keep = False
        self.got = asyncio.Event()
        self.want = 0
        self.task = asyncio.create_task(self.run())

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()

    async def run(self) -> None:
        async for frame in self.ws:
            if self.marker in frame:
                self.times.append(time.perf_counter())
                if self.keep:
                    self.frames.append(frame)
                if len(self.times) >= self.want:
                    self.got.set()


class LocalGroup:
    """Students whose sockets live in this process."""

    def __init__(self, receivers: list) -> None:  # type: ignore[type-arg]
        self.receivers = receivers

    def expect(self, n: int) -> None:
        for r in self.receivers:
            r.want = n
            if len(r.times) < n:
                r.got.clear()

    async def arrived(self, n: int) -> float:
        await asyncio.wait_for(asyncio.gather(*(r.got.wait() for r in self.receivers)), 60)
        return max(r.times[n - 1] for r in self.receivers)

    async def close(self, steps: int) -> bool:
        complete = all(len(r.times) == steps for r in self.receivers)
        for r in self.receivers:
            await r.close()
        return complete


class Side:
    """One server under test, its clients connected: a send and who must receive it."""

    def __init__(self, send, groups: list, others: list, before: int, after: int,  # type: ignore[no-untyped-def]
                 students: int) -> None:
        self.send, self.groups, self.others = send, groups, others
        self.before, self.after, self.students = before, after, students
        self.latencies: list[float] = []

    async def step(self, n: int) -> None:
        for g in self.groups:
            g.expect(n)
        started = time.perf_counter()
        await self.send(n)
        last = max(await asyncio.gather(*(g.arrived(n) for g in self.groups)))
        self.latencies.append(last - started)

    async def close(self) -> dict[str, float]:
        steps = len(self.latencies)
        complete = all([await g.close(steps) for g in self.groups])
        for ws in self.others:
            await ws.close()
        return _stats(self.latencies, self.before, self.after, self.students) | {
            "every_step": complete
        }


def _child(conn, targets: list[tuple[str, dict[str, str], str | None]], marker: str,  # type: ignore[no-untyped-def]
           client: str) -> None:
    """A client process: opens its share of the students, reports each complete step."""

    async def main() -> None:
        receivers = await open_students(targets, marker, client)
        loop = asyncio.get_running_loop()
        conn.send("ready")
        n = 0
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "close":
                break
            n = command
            while min(len(r.times) for r in receivers) < n:
                for r in receivers:
                    r.want = n
                    if len(r.times) < n:
                        r.got.clear()
                await asyncio.gather(*(r.got.wait() for r in receivers))
            conn.send(max(r.times[n - 1] for r in receivers))
        conn.send(all(len(r.times) == n for r in receivers))
        for r in receivers:
            await r.close()

    asyncio.run(main())


class RemoteGroup:
    """Students whose sockets live in another client process (perf_counter is the
    system's monotonic clock, so its times compare with this process's)."""

    def __init__(self, targets: list[tuple[str, dict[str, str], str | None]], marker: str,
                 client: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, targets, marker, client))
        self.proc.start()

    async def ready(self) -> None:
        assert await asyncio.to_thread(self.conn.recv) == "ready"

    def expect(self, n: int) -> None:
        self.conn.send(n)

    async def arrived(self, n: int) -> float:
        return await asyncio.to_thread(self.conn.recv)

    async def close(self, steps: int) -> bool:
        self.conn.send("close")
        complete = await asyncio.to_thread(self.conn.recv)
        await asyncio.to_thread(self.proc.join, 60)
        return bool(complete)


async def open_students(targets: list[tuple[str, dict[str, str], str | None]], marker: str,
                        client: str) -> list:  # type: ignore[type-arg]
    if client == "websockets":
        socks = await _open_many([(u, h) for u, h, _ in targets], [x for _, _, x in targets])
        return [Receiver(ws, marker) for ws in socks]
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(url: str, headers: dict[str, str], hello: str | None) -> LeanClient:
        async with gate:
            return await open_lean(url, headers, marker.encode(), hello=hello,
                                   until=b'"type":"sync"')

    return await asyncio.gather(*(one(*t) for t in targets))


async def make_groups(targets: list[tuple[str, dict[str, str], str | None]], marker: str,
                      clients: int, client: str) -> list:  # type: ignore[type-arg]
    if clients <= 1:
        return [LocalGroup(await open_students(targets, marker, client))]
    groups = [RemoteGroup(targets[i::clients], marker, client) for i in range(clients)]
    for g in groups:
        await g.ready()
    return groups


async def interleaved(sides: list[Side], steps: int) -> None:
    """The two servers step in turn, so both see the same machine load over the run."""
    for n in range(1, steps + 1):
        for side in sides:
            await side.step(n)
            await asyncio.sleep(STEP_GAP)


async def _open_many(urls_headers: list[tuple[str, dict[str, str]]], hello: list[str | None]):  # type: ignore[no-untyped-def]
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(i: int):  # type: ignore[no-untyped-def]
        url, headers = urls_headers[i]
        async with gate:
            ws = await connect(url, additional_headers=headers, max_size=2**22, open_timeout=120)
            if hello[i] is not None:
                await ws.send(hello[i])
                while '"type":"sync"' not in await ws.recv():
                    pass
            return ws

    return await asyncio.gather(*(one(i) for i in range(len(urls_headers))))


async def prepare_room(base: str, pids_of, students: int, clients: int, client: str  # type: ignore[no-untyped-def]
                       ) -> Side:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        page = await http.post("/classroom", data={"scenario": "basic-pop3"},
                               follow_redirects=True)
        code = CODE.search(page.text).group(1)  # type: ignore[union-attr]
        teacher_cookie = f"mft_{code}={http.cookies.get(f'mft_{code}')}"
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def join(i: int) -> str:
            async with gate:
                r = await http.post(f"/r/{code}", data={"nick": f"s{i}"},
                                    follow_redirects=False)
                assert r.status_code == 303, r.text[:300]
                return f"mfs_{code}={r.cookies.get(f'mfs_{code}')}"

        # One more student, the probe, in this process: it keeps the step messages it
        # gets, which the bare broadcast then sends (the same payload, byte for byte).
        cookies = await asyncio.gather(*(join(i) for i in range(students + 1)))
        probe_cookie = cookies.pop()
    ws_url = base.replace("http://", "ws://") + "/ws/room"
    before = rss_total(pids_of())
    hello = json.dumps({"type": "hello", "code": code, "role": "student", "lang": "ja"})
    targets = [(ws_url, {"Cookie": c, "Origin": base}, hello) for c in cookies]
    groups = await make_groups(targets, '"type":"step"', clients, client)
    after = rss_total(pids_of())
    probe_ws = (await _open_many([(ws_url, {"Cookie": probe_cookie, "Origin": base})],
                                 [hello]))[0]
    probe = Receiver(probe_ws, '"type":"step"')
    probe.keep = True
    groups.append(LocalGroup([probe]))
    teacher = (await _open_many([(ws_url, {"Cookie": teacher_cookie, "Origin": base})],
                                [hello.replace('"student"', '"teacher"')]))[0]
    side = Side(lambda n: teacher.send('{"type":"next"}'), groups, [teacher], before, after,
                students)
    side.probe = probe  # type: ignore[attr-defined]
    return side


async def prepare_bare(base: str, pid: int, students: int, probe: Receiver, clients: int,
                       client: str) -> Side:
    ws_url = base.replace("http://", "ws://")
    before = rss_kib(pid)
    groups = await make_groups([(ws_url + "/ws", {}, None)] * students, '"type":"step"',
                               clients, client)
    after = rss_kib(pid)
    teacher = await connect(ws_url + "/ws/teacher", max_size=2**22)
    # Step n of the bare run sends the room's own step n message, as the probe got it.
    return Side(lambda n: teacher.send(probe.frames[n - 1]), groups, [teacher], before,
                after, students)


async def run(room_base: str, pids_of, bare_base: str, bare_pid: int, students: int,  # type: ignore[no-untyped-def]
              steps: int, clients: int, client: str) -> dict[str, dict]:  # type: ignore[type-arg]
    room = await prepare_room(room_base, pids_of, students, clients, client)
    bare = await prepare_bare(bare_base, bare_pid, students, room.probe, clients, client)  # type: ignore[attr-defined]
    await interleaved([room, bare], steps)
    return {"room": await room.close(), "bare": await bare.close()}


def _stats(latencies: list[float], before: int, after: int, n: int) -> dict[str, float]:
    return {
        "students": n,
        "steps": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "max_ms": max(latencies) * 1000,
        "kib_per_student": (after - before) / n,
    }


def start_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    return proc, f"redis://127.0.0.1:{port}/0"


async def room_compresses(base: str) -> bool:
    """Whether the room server agreed to permessage-deflate with a client offering it
    (as browsers do): the bare broadcast is then started with the same setting."""
    url = base.replace("http://", "ws://") + "/ws/room"
    async with connect(url, additional_headers={"Origin": base}) as ws:
        assert ws.response is not None
        return "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")


def wait_workers(base: str, count: int) -> None:
    seen: set[str] = set()
    for _ in range(2000):  # bounded: stop as soon as every worker has answered once
        try:
            with httpx.Client() as c:
                seen.add(c.get(base + "/join", timeout=5).headers["x-mailflow-worker"])
        except httpx.HTTPError:
            time.sleep(0.1)
        if len(seen) >= count:
            return
    raise RuntimeError("the workers did not all answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=1,
                        help="client processes the students are spread over")
    parser.add_argument("--client", choices=("lean", "websockets"), default="lean",
                        help="the students' websocket client (bench/lean_ws.py or the "
                             "websockets library); both offer permessage-deflate as browsers do")
    parser.add_argument("--deflate", choices=("product", "on", "off"), default="product",
                        help="the servers' permessage-deflate: as the product configures "
                             "uvicorn (the bare server then matches it), or forced on/off")
    args = parser.parse_args()
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as data:
        env = {"MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0",
               "MAILFLOW_ROOM_MAX_STUDENTS": str(args.students + 10),
               "MAILFLOW_ROOM_JOIN_RATE": str(args.students * 100)}
        redis = None
        deflate = None
        if args.workers > 1:
            redis, url = start_redis(data)
            env |= {"MAILFLOW_REDIS_URL": url, "MAILFLOW_WEB_WORKERS": str(args.workers)}
        app_port, bare_port = free_port(), free_port()
        # Both servers run uvicorn's sans-I/O websockets with the same compression setting,
        # so the baseline differs from the room in the app only.
        if args.deflate != "product":
            env["BENCH_WS_DEFLATE"] = "1" if args.deflate == "on" else "0"
        app = start_process(["-m", "bench.run_app"], {**env, "MAILFLOW_PORT": str(app_port)})
        bare = None
        try:
            wait_for_port(app_port, 60)
            base = f"http://127.0.0.1:{app_port}"
            if args.workers > 1:
                wait_workers(base, args.workers)
            deflate = asyncio.run(room_compresses(base))
            bare = start_process(["-m", "uvicorn", "bench.broadcast_app:app", "--port",
                                  str(bare_port), "--log-level", "warning",
                                  "--ws", "websockets-sansio",
                                  "--ws-per-message-deflate", str(deflate).lower()])
            wait_for_port(bare_port)

            def pids() -> list[int]:
                return children(app.pid) if args.workers > 1 else [app.pid]

            results = asyncio.run(run(base, pids, f"http://127.0.0.1:{bare_port}", bare.pid,
                                      args.students, args.steps, args.clients, args.client))
        finally:
            for proc in (app, bare):
                if proc is None:
                    continue
                proc.terminate()
                proc.wait(timeout=30)
            if redis is not None:
                redis.terminate()
                redis.wait(timeout=10)
    print(f"client {args.client}, servers compress: {deflate}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'':6}{'students':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'KiB/stud':>10}"
          f"{'all steps':>10}")
    for name, r in results.items():
        print(f"{name:6}{r['students']:>9}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
              f"{r['max_ms']:>9.1f}{r['kib_per_student']:>10.1f}{r['every_step']!s:>10}")
    room, bare = results["room"], results["bare"]
    print(f"p95 ratio room/bare: {room['p95_ms'] / bare['p95_ms']:.2f}; "
          f"memory above bare: {room['kib_per_student'] - bare['kib_per_student']:.1f} KiB/student")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

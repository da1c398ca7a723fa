"""A class opens one flow link at once: N learners load /flow/basic-pop3 together.

Each learner: GET /flow/basic-pop3 on its own connection, read the session id from the
page, open /ws/flow and send `hello`; timed from the page request to the websocket's
first answer (`ready` or `sync`: the page shows its position). Run after the recording
pool is filled (polled on /healthz), so no learner should wait for a scenario run; the
pool's `waits` counter on /healthz (page loads that found no recording and waited for
a run) before and after each burst says whether one did.

Baseline in the same run, same client, same load: N learners GET /quiz/ports at once.
Rounds alternate the order of the two. Loopback only; the app runs in its own process.
Also printed: the web process's CPU time per learner (from /proc), which says what a
burst costs the server independently of how busy the shared machine is.

    .venv/bin/python bench/bench_flow_burst.py --learners 100 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port, percentile, start_process, wait_for_port
from lean_ws import LeanSocket

SESSION = re.compile(r'data-session="([^"]+)"')


async def wait_filled(base: str, timeout: float) -> dict:
    """Poll /healthz until the pool holds every recording it aims for."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        while True:
            body = (await c.get("/healthz")).json()
            pool = body["recordings"]
            if pool["ready"] >= pool["target"]:
                return body
            if time.monotonic() > deadline:
                raise RuntimeError(f"pool not filled in {timeout} s: {pool}")
            await asyncio.sleep(1.0)


async def get(base: str, path: str) -> str:
    """A bare HTTP/1.1 GET on a new connection. The load generator shares the two CPUs
    with the server; a full client library would cost it more than the server's work."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    data = await reader.read()  # until the server closes
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    return body.decode()


async def learner_flow(base: str, go: asyncio.Event, out: list[float]) -> None:
    await go.wait()
    started = time.perf_counter()
    page = await get(base, "/flow/basic-pop3")
    session = SESSION.search(page).group(1)
    host, port = base.removeprefix("http://").split(":")
    ws = await LeanSocket.connect(host, int(port), "/ws/flow")
    hello = {"type": "hello", "slug": "basic-pop3", "session": session, "lang": "ja"}
    await ws.send(json.dumps(hello))
    reply = json.loads(await ws.recv())
    assert reply["type"] in ("ready", "sync"), reply
    out.append(time.perf_counter() - started)
    await ws.close()


async def learner_quiz(base: str, go: asyncio.Event, out: list[float]) -> None:
    await go.wait()
    started = time.perf_counter()
    await get(base, "/quiz/ports")
    out.append(time.perf_counter() - started)


async def burst(kind: str, base: str, learners: int) -> list[float]:
    body = learner_flow if kind == "flow" else learner_quiz
    go = asyncio.Event()
    out: list[float] = []
    tasks = [asyncio.create_task(body(base, go, out)) for _ in range(learners)]
    await asyncio.sleep(0.2)  # every client created and parked on `go`
    go.set()
    await asyncio.gather(*tasks)
    return out


async def waits(base: str) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        return (await c.get("/healthz")).json()["recordings"]["waits"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(base: str, pid: int, learners: int, rounds: int, fill_timeout: float) -> dict:
    filled_at = time.perf_counter()
    health = await wait_filled(base, fill_timeout)
    print(f"pool filled: {health['recordings']}", flush=True)
    results: dict[str, list[float]] = {"quiz": [], "flow": []}
    cpu: dict[str, float] = {"quiz": 0.0, "flow": 0.0}
    waits_in_flow = 0
    await burst("quiz", base, 10)  # warm-up: first templates, first connections
    await burst("flow", base, 10)
    for r in range(rounds):
        order = ("quiz", "flow") if r % 2 == 0 else ("flow", "quiz")
        for kind in order:
            before = await waits(base)
            cpu_before = cpu_seconds(pid)
            lat = await burst(kind, base, learners)
            cpu[kind] += cpu_seconds(pid) - cpu_before
            if kind == "flow":
                waits_in_flow += await waits(base) - before
            results[kind].extend(lat)
            print(f"round {r + 1} {kind}: p95 {percentile(lat, 95) * 1000:.0f} ms", flush=True)
            await asyncio.sleep(1.0)  # the server settles between bursts
    return {
        "fill_wait_s": round(time.perf_counter() - filled_at, 1),
        "waits_in_flow": waits_in_flow,
        **{
            kind: {
                "samples": len(lat),
                "p50_ms": percentile(lat, 50) * 1000,
                "p95_ms": percentile(lat, 95) * 1000,
                "p99_ms": percentile(lat, 99) * 1000,
                "max_ms": max(lat) * 1000,
                "server_cpu_ms_per_learner": cpu[kind] * 1000 / len(lat),
            }
            for kind, lat in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fill-timeout", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        app = start_process(
            ["-m", "app"],
            {"MAILFLOW_PORT": str(port), "MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0"},
        )
        try:
            wait_for_port(port)
            base = f"http://127.0.0.1:{port}"
            result = asyncio.run(
                bench(base, app.pid, args.learners, args.rounds, args.fill_timeout)
            )
        finally:
            app.terminate()
            app.wait(timeout=20)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'':6}{'samples':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'cpu ms/learner':>16}"
    )
    for kind in ("quiz", "flow"):
        r = result[kind]
        print(
            f"{kind:6}{r['samples']:>8}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
            f"{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}{r['server_cpu_ms_per_learner']:>16.2f}"
        )
    ok = result["flow"]["p95_ms"] <= 300 and result["waits_in_flow"] == 0
    print(f"page loads that waited for a run: {result['waits_in_flow']}")
    print(f"target flow p95 <= 300 ms, no page waiting for a run: {'met' if ok else 'NOT met'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Flow page load: N browser sessions stepping through basic-pop3 at 2 steps per second.

Each session starts with `hello`, which since the recording pool gets the pool's shared
recording (the first one waits for the run; see bench_flow_many.py for 2,000 sessions).

Reports step latency (the `next` control sent → its `step` event received) and the
server's memory per session, next to a bare Starlette websocket echo measured in the
same run, on the same machine, with the same client. Both servers run in their own
process (uvicorn), the client in this one. Loopback only; every loop is bounded.

    .venv/bin/python bench/bench_flow.py --sessions 500 --steps 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time

from common import free_port, percentile, rss_kib, start_process, wait_for_port
from websockets.asyncio.client import connect

STEP_INTERVAL = 0.5  # 2 steps per second per session
RAMP_CONCURRENCY = 16


async def flow_session(
    url: str,
    ready: asyncio.Event,
    go: asyncio.Event,
    steps: int,
    latencies: list[float],
    connections: list,
) -> None:
    ws = await connect(url, max_size=2**20, open_timeout=120)
    connections.append(ws)
    await ws.send(json.dumps({"type": "hello", "slug": "basic-pop3", "lang": "ja"}))
    reply = json.loads(await ws.recv())
    assert reply["type"] in ("sync", "ready"), reply
    ready.set()
    await go.wait()
    await asyncio.sleep(random.uniform(0, STEP_INTERVAL))  # learners do not press in lockstep
    for _ in range(steps):
        started = time.perf_counter()
        await ws.send('{"type":"next"}')
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "step":
                break
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, STEP_INTERVAL - (time.perf_counter() - started)))


async def echo_session(
    url: str,
    ready: asyncio.Event,
    go: asyncio.Event,
    steps: int,
    latencies: list[float],
    connections: list,
) -> None:
    ws = await connect(url, open_timeout=120)
    connections.append(ws)
    ready.set()
    await go.wait()
    await asyncio.sleep(random.uniform(0, STEP_INTERVAL))
    for _ in range(steps):
        started = time.perf_counter()
        await ws.send('{"type":"next"}')
        await ws.recv()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, STEP_INTERVAL - (time.perf_counter() - started)))


async def drive(kind: str, url: str, pid: int, sessions: int, steps: int) -> dict[str, float]:
    body = flow_session if kind == "flow" else echo_session
    latencies: list[float] = []
    connections: list = []
    go = asyncio.Event()
    rss_before = rss_kib(pid)
    ramp = asyncio.Semaphore(RAMP_CONCURRENCY)
    tasks = []
    ramp_started = time.perf_counter()
    for _ in range(sessions):
        ready = asyncio.Event()
        async with ramp:
            tasks.append(asyncio.create_task(body(url, ready, go, steps, latencies, connections)))
            await ready.wait()
    ramp_seconds = time.perf_counter() - ramp_started
    rss_after = rss_kib(pid)
    go.set()
    await asyncio.gather(*tasks)
    for ws in connections:
        await ws.close()
    return {
        "sessions": sessions,
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_session": (rss_after - rss_before) / sessions,
        "ramp_seconds": ramp_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as data:
        app_port, echo_port = free_port(), free_port()
        app = start_process(
            ["-m", "app"],
            {"MAILFLOW_PORT": str(app_port), "MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0"},
        )
        echo = start_process(
            [
                "-m",
                "uvicorn",
                "bench.echo_app:app",
                "--port",
                str(echo_port),
                "--log-level",
                "warning",
            ]
        )
        try:
            wait_for_port(app_port)
            wait_for_port(echo_port)
            results["echo"] = asyncio.run(
                drive("echo", f"ws://127.0.0.1:{echo_port}/ws", echo.pid, args.sessions, args.steps)
            )
            results["flow"] = asyncio.run(
                drive(
                    "flow", f"ws://127.0.0.1:{app_port}/ws/flow", app.pid, args.sessions, args.steps
                )
            )
        finally:
            for proc in (app, echo):
                proc.terminate()
                proc.wait(timeout=10)
    print(
        f"{'':8}{'sessions':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'KiB/sess':>10}{'ramp s':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:8}{r['sessions']:>9}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
            f"{r['p99_ms']:>9.2f}{r['kib_per_session']:>10.1f}{r['ramp_seconds']:>8.1f}"
        )
    flow = results["flow"]
    ok = flow["p95_ms"] <= 50 and flow["kib_per_session"] <= 200
    print(f"target p95 <= 50 ms and <= 200 KiB/session: {'met' if ok else 'NOT met'}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

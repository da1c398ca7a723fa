"""Many flow sessions on one web process: 2,000 learners on basic-pop3.

Every session opens /ws/flow and sends `hello` (an unknown session: the server makes one
on the pool's shared recording), gets its `sync`, and presses `next` once: "showing its
first step". Timed: from the first connection until all N sessions show step 1 (the
handshakes go `--open` at a time). Then every learner keeps pressing `next` every
`--interval` seconds (starting at a random offset, as people do not press in lockstep),
`--steps` times; latency is `next` sent → its `step` received. Memory: the server's RSS
after all sessions are open minus before, divided by N (the pool's recordings are
filled before, so they are not counted per session).

Baseline in the same run, same client: a bare Starlette websocket echo
(bench/echo_app.py) under uvicorn, driven the same way (`hello` and `next` echoed).

    .venv/bin/python bench/bench_flow_many.py --sessions 2000 --steps 10 --interval 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time

import httpx
from bench_flow_burst import wait_filled
from common import free_port, percentile, rss_kib, start_process, wait_for_port
from websockets.asyncio.client import connect

HELLO = json.dumps({"type": "hello", "slug": "basic-pop3", "lang": "ja"})


async def until(ws, kind: str, flow: bool) -> dict:
    while True:
        msg = json.loads(await ws.recv())
        if not flow or msg["type"] == kind:
            return msg


async def learner(
    url: str,
    flow: bool,
    opening: asyncio.Semaphore,
    first_step: list[float],
    t0: float,
    go: asyncio.Event,
    args: argparse.Namespace,
    latencies: list[float],
    connections: list,
) -> None:
    async with opening:
        ws = await connect(url, max_size=2**20, open_timeout=120, ping_interval=None)
    connections.append(ws)
    await ws.send(HELLO)
    reply = json.loads(await ws.recv())
    assert not flow or reply["type"] == "sync", reply
    await ws.send('{"type":"next"}')
    step = await until(ws, "step", flow)
    assert not flow or step["step"] == 1, step
    first_step.append(time.perf_counter() - t0)
    await go.wait()
    await asyncio.sleep(random.uniform(0, args.interval))
    for _ in range(args.steps):
        started = time.perf_counter()
        await ws.send('{"type":"next"}')
        await until(ws, "step", flow)
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, args.interval - (time.perf_counter() - started)))


async def drive(url: str, flow: bool, pid: int, args: argparse.Namespace) -> dict:
    opening = asyncio.Semaphore(args.open)
    first_step: list[float] = []
    latencies: list[float] = []
    connections: list = []
    go = asyncio.Event()
    rss_before = rss_kib(pid)
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(
            learner(url, flow, opening, first_step, t0, go, args, latencies, connections)
        )
        for _ in range(args.sessions)
    ]
    while len(first_step) < args.sessions:
        done = [t for t in tasks if t.done() and t.exception()]
        if done:
            raise done[0].exception()
        await asyncio.sleep(0.05)
    all_shown = max(first_step)
    await asyncio.sleep(1.0)  # let the server's allocator settle before reading RSS
    rss_after = rss_kib(pid)
    go.set()
    await asyncio.gather(*tasks)
    for ws in connections:
        await ws.close()
    return {
        "sessions": args.sessions,
        "all_first_step_s": all_shown,
        "first_step_p95_s": percentile(first_step, 95),
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "kib_per_session": (rss_after - rss_before) / args.sessions,
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between nexts")
    parser.add_argument("--open", type=int, default=100, help="handshakes at a time")
    parser.add_argument("--fill-timeout", type=float, default=600)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as data:
        app_port, echo_port = free_port(), free_port()
        app = start_process(
            ["-m", "app"],
            {"MAILFLOW_PORT": str(app_port), "MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0"},
        )
        echo_args = ["bench.echo_app:app", "--port", str(echo_port), "--log-level", "warning"]
        echo = start_process(["-m", "uvicorn", *echo_args])
        try:
            wait_for_port(app_port)
            wait_for_port(echo_port)
            asyncio.run(wait_filled(f"http://127.0.0.1:{app_port}", args.fill_timeout))
            echo_url = f"ws://127.0.0.1:{echo_port}/ws"
            results["echo"] = asyncio.run(drive(echo_url, False, echo.pid, args))
            flow_url = f"ws://127.0.0.1:{app_port}/ws/flow"
            results["flow"] = asyncio.run(drive(flow_url, True, app.pid, args))
            health = httpx.get(f"http://127.0.0.1:{app_port}/healthz", timeout=30).json()
            results["pool"] = health["recordings"]
        finally:
            for proc in (app, echo):
                proc.terminate()
                proc.wait(timeout=20)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'':6}{'sessions':>9}{'all shown s':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'KiB/sess':>10}"
    )
    for name in ("echo", "flow"):
        r = results[name]
        print(
            f"{name:6}{r['sessions']:>9}{r['all_first_step_s']:>12.1f}{r['p50_ms']:>9.2f}"
            f"{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['kib_per_session']:>10.1f}"
        )
    flow = results["flow"]
    ok = flow["p95_ms"] <= 20 and flow["kib_per_session"] <= 100 and flow["all_first_step_s"] <= 10
    print(f"target next p95 <= 20 ms, <= 100 KiB/session, all shown <= 10 s: "
          f"{'met' if ok else 'NOT met'}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

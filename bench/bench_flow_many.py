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
(bench/echo_app.py) under uvicorn with the app's uvicorn settings, driven the same way
(`hello` and `next` echoed). Also printed: the server's CPU time per session opened and
per `next` (from /proc), which says what the work costs independently of the load.

The load generator is lean (bench/lean_ws.py) and split over `--clients` processes
(sessions dealt round-robin, handshakes `--open` at a time in all): it shares the two
CPUs with the server, and one process driving 2,000 sockets with the `websockets`
client measured mostly itself. The server's work per session is unchanged.

    .venv/bin/python bench/bench_flow_many.py --sessions 2000 --steps 10 --interval 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import tempfile
import time
from multiprocessing.connection import Connection

import httpx
from bench_flow_burst import cpu_seconds, wait_filled
from common import free_port, percentile, rss_kib, start_process, wait_for_port
from lean_ws import LeanSocket

HELLO = json.dumps({"type": "hello", "slug": "basic-pop3", "lang": "ja"})
NEXT = '{"type":"next"}'


async def until(ws: LeanSocket, kind: str, flow: bool) -> dict:
    while True:
        msg = json.loads(await ws.recv())
        if not flow or msg["type"] == kind:
            return msg


async def learner(
    port: int,
    path: str,
    flow: bool,
    opening: asyncio.Semaphore,
    first_step: list[float],
    go: asyncio.Event,
    args: argparse.Namespace,
    latencies: list[float],
) -> None:
    async with opening:
        ws = await LeanSocket.connect("127.0.0.1", port, path)
    await ws.send(HELLO)
    reply = json.loads(await ws.recv())
    assert not flow or reply["type"] == "sync", reply
    await ws.send(NEXT)
    step = await until(ws, "step", flow)
    assert not flow or step["step"] == 1, step
    first_step.append(time.monotonic())  # system-wide clock: compared across processes
    await go.wait()
    await asyncio.sleep(random.uniform(0, args.interval))
    for _ in range(args.steps):
        started = time.perf_counter()
        await ws.send(NEXT)
        await until(ws, "step", flow)
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, args.interval - (time.perf_counter() - started)))
    await ws.close()


async def client(
    pipe: Connection, port: int, path: str, flow: bool, count: int, args: argparse.Namespace
) -> None:
    """One client process's share: open `count` sessions, report when all show step 1,
    wait for the parent's go, step, report the latencies."""
    opening = asyncio.Semaphore(max(1, args.open // args.clients))
    first_step: list[float] = []
    latencies: list[float] = []
    go = asyncio.Event()
    tasks = [
        asyncio.create_task(learner(port, path, flow, opening, first_step, go, args, latencies))
        for _ in range(count)
    ]
    while len(first_step) < count:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        await asyncio.sleep(0.05)
    pipe.send(max(first_step))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # the go
    go.set()
    await asyncio.gather(*tasks)
    pipe.send(latencies)


def client_main(
    pipe: Connection, port: int, path: str, flow: bool, count: int, args: argparse.Namespace
) -> None:
    asyncio.run(client(pipe, port, path, flow, count, args))


def drive(port: int, path: str, flow: bool, pid: int, args: argparse.Namespace) -> dict:
    ctx = multiprocessing.get_context("fork")  # before any event loop in this process
    shares = [
        args.sessions // args.clients + (i < args.sessions % args.clients)
        for i in range(args.clients)
    ]
    rss_before = rss_kib(pid)
    cpu_before = cpu_seconds(pid)
    t0 = time.monotonic()
    pipes, procs = [], []
    for count in shares:
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=client_main, args=(theirs, port, path, flow, count, args))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    all_shown = max(pipe.recv() for pipe in pipes) - t0
    cpu_open = cpu_seconds(pid) - cpu_before
    time.sleep(1.0)  # let the server's allocator settle before reading RSS
    rss_after = rss_kib(pid)
    cpu_before = cpu_seconds(pid)
    for pipe in pipes:
        pipe.send("go")
    latencies = [x for pipe in pipes for x in pipe.recv()]
    cpu_steps = cpu_seconds(pid) - cpu_before
    for proc in procs:
        proc.join()
    return {
        "sessions": args.sessions,
        "all_first_step_s": all_shown,
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "kib_per_session": (rss_after - rss_before) / args.sessions,
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "server_cpu_ms_per_open": cpu_open * 1000 / args.sessions,
        "server_cpu_ms_per_next": cpu_steps * 1000 / max(1, len(latencies)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between nexts")
    parser.add_argument("--open", type=int, default=100, help="handshakes at a time, in all")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--fill-timeout", type=float, default=600)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as data:
        app_port, echo_port = free_port(), free_port()
        app = start_process(
            ["-m", "app"],
            {"MAILFLOW_PORT": str(app_port), "MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0"},
        )
        echo = start_process(["-m", "bench.echo_app", str(echo_port)])
        try:
            wait_for_port(app_port)
            wait_for_port(echo_port)
            asyncio.run(wait_filled(f"http://127.0.0.1:{app_port}", args.fill_timeout))
            results["echo"] = drive(echo_port, "/ws", False, echo.pid, args)
            results["flow"] = drive(app_port, "/ws/flow", True, app.pid, args)
            health = httpx.get(f"http://127.0.0.1:{app_port}/healthz", timeout=30).json()
            results["pool"] = health["recordings"]
        finally:
            for proc in (app, echo):
                proc.terminate()
                proc.wait(timeout=20)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'':6}{'sessions':>9}{'all shown s':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'KiB/sess':>10}{'cpu ms/open':>12}{'cpu ms/next':>12}"
    )
    for name in ("echo", "flow"):
        r = results[name]
        print(
            f"{name:6}{r['sessions']:>9}{r['all_first_step_s']:>12.1f}{r['p50_ms']:>9.2f}"
            f"{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['kib_per_session']:>10.1f}"
            f"{r['server_cpu_ms_per_open']:>12.2f}{r['server_cpu_ms_per_next']:>12.3f}"
        )
    flow = results["flow"]
    ok = flow["p95_ms"] <= 20 and flow["kib_per_session"] <= 100 and flow["all_first_step_s"] <= 10
    print(
        "target next p95 <= 20 ms, <= 100 KiB/session, all shown <= 10 s: "
        f"{'met' if ok else 'NOT met'}"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

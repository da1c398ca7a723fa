"""One flow socket flooding gotos: /healthz latency for everyone else, and the flooder's cost.

The app runs in its own process (uvicorn, lab off). First /healthz is timed with no flood
(the baseline), then again while one client floods: it opens /ws/flow, says hello to a
basic-pop3 session, sends 2,000 `{"type":"goto","step":<last>}` as fast as it can, reads
until the reply to a final marker, and starts over on a new socket, for as long as the
second measurement lasts. Loopback only; every loop is bounded.

    .venv/bin/python bench/bench_ws_flood.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import threading
import time

import httpx
from common import free_port, percentile, start_process, wait_for_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

FLOOD = 2000


async def healthz(base: str, requests: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        for _ in range(requests):
            started = time.perf_counter()
            r = await c.get("/healthz")
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
    return latencies


async def flood(base: str, stop: threading.Event, stats: dict[str, float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        html = (await c.get("/flow/basic-pop3")).text
    session = re.search(r'data-session="([^"]+)"', html).group(1)
    total = int(re.search(r'data-total="(\d+)"', html).group(1))
    goto = json.dumps({"type": "goto", "step": total})
    while not stop.is_set():
        async with connect(base.replace("http", "ws") + "/ws/flow", max_size=2**26) as ws:
            hello = {"type": "hello", "slug": "basic-pop3", "session": session}
            await ws.send(json.dumps(hello))
            await ws.recv()
            started = time.perf_counter()
            for _ in range(FLOOD):
                await ws.send(goto)
            await ws.send(json.dumps({"type": "speed", "value": 2}))
            frames = 0
            try:
                while True:
                    msg = json.loads(await ws.recv())
                    if msg["type"] == "state" and msg.get("speed") == 2:
                        break
                    frames += 1
            except ConnectionClosed:
                stats["closed"] += 1
            stats["rounds"] += 1
            stats["frames"] += frames
            stats["round_seconds"] += time.perf_counter() - started


async def measure(base: str, requests: int) -> dict[str, object]:
    quiet = await healthz(base, requests)
    # The flooder has its own thread and event loop, so its sending does not delay
    # this client's requests: what is measured is the server.
    stop = threading.Event()
    stats = {"rounds": 0, "frames": 0, "closed": 0, "round_seconds": 0.0}
    flooder = threading.Thread(target=lambda: asyncio.run(flood(base, stop, stats)))
    flooder.start()
    await asyncio.sleep(0.5)  # the flood is under way before the first timed request
    busy = await healthz(base, requests)
    stop.set()
    flooder.join(timeout=120)
    rounds = max(stats["rounds"], 1)
    return {
        "quiet_p50_ms": percentile(quiet, 50) * 1000,
        "quiet_p95_ms": percentile(quiet, 95) * 1000,
        "flood_p50_ms": percentile(busy, 50) * 1000,
        "flood_p95_ms": percentile(busy, 95) * 1000,
        "flood_rounds": stats["rounds"],
        "frames_per_2000_gotos": stats["frames"] / rounds,
        "seconds_per_round": stats["round_seconds"] / rounds,
        "closed_rounds": stats["closed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        app = start_process(
            ["-m", "app"],
            {"MAILFLOW_PORT": str(port), "MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0"},
        )
        try:
            wait_for_port(port)
            result = asyncio.run(measure(f"http://127.0.0.1:{port}", args.requests))
        finally:
            app.terminate()
            app.wait(timeout=10)
    for name in ("quiet", "flood"):
        p50, p95 = result[f"{name}_p50_ms"], result[f"{name}_p95_ms"]
        print(f"healthz ({name}): p50 {p50:.2f} ms  p95 {p95:.2f} ms")
    print(
        f"flooder: {result['flood_rounds']} rounds of {FLOOD} gotos, "
        f"{result['frames_per_2000_gotos']:.1f} frames and {result['seconds_per_round']:.2f} s each"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Lab live view fan-out: 300 viewers on /ws/lab while 50 mails go through the lab.

The app runs in its own process with the lab listeners on. 300 websocket viewers say
hello and wait; then 50 mails are sent to the lab's port 25 for bob (SMTP session,
inbound queue, LMTP delivery: every line becomes a live event), followed by one marker
session. Timed from the first mail until every viewer has received the marker's event.
Baseline, same run: a bare Starlette broadcast (bench/broadcast_app.py) sending the very
frames one lab viewer received to 300 viewers of its own.

    .venv/bin/python bench/bench_lab_fanout.py --viewers 300 --mails 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import smtplib
import socket
import tempfile
import time

import httpx
from common import free_port, percentile, start_process, wait_for_port
from websockets.asyncio.client import connect

MARKER = "fanout-done.example"
LAB_PORTS = (25, 587, 465, 110, 995, 143, 993)
MAIL = "From: carol@c.example\r\nTo: bob@b.example\r\nSubject: fan-out\r\n\r\nHello\r\n"


def free_lab_offset() -> int:
    for _ in range(200):
        offset = random.randrange(20000, 50000)
        if all(_free(port + offset) for port in LAB_PORTS):
            return offset
    raise RuntimeError("no free lab ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def send_mails(port: int, mails: int) -> None:
    for _ in range(mails):
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
            c.sendmail("carol@c.example", ["bob@b.example"], MAIL)
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
        c.ehlo(MARKER)


async def viewer(url: str, hello: str | None, ready: asyncio.Event, done: list, keep: list | None):
    # No client pings: 300 viewers in one client process are slow to answer their own.
    async with connect(
        url, max_size=2**26, open_timeout=120, max_queue=None, ping_interval=None
    ) as ws:
        if hello is not None:
            await ws.send(hello)
            await ws.recv()  # the recent events
        ready.set()
        while True:
            frame = await ws.recv()
            if keep is not None:
                keep.append(frame)
            if MARKER in frame:
                done.append(time.perf_counter())
                return


async def raw_viewer(url: str, hello: str | None, ready: asyncio.Event, done: list) -> None:
    """A viewer that reads the socket in big chunks and only looks for the marker: the
    server sends frames unmasked, so the bytes can be searched as they are. Keeps the
    client's cost per frame near zero, so what is measured is the server."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    if hello is not None:
        payload = hello.encode()  # a masked client frame (RFC 6455 §5.3), mask 0
        writer.write(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
        await reader.readuntil(b'"count"')  # the recent events
    ready.set()
    marker, tail = MARKER.encode(), b""
    while True:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise RuntimeError("closed before the marker")
        if marker in tail + chunk:
            done.append(time.perf_counter())
            writer.close()
            return
        tail = chunk[-len(marker) :]


async def open_viewers(url: str, hello: str | None, n: int, done: list, keep: list):
    tasks = []
    for i in range(n):
        ready = asyncio.Event()
        if i == 0:  # one real websocket client keeps the frames, for the baseline
            body = viewer(url, hello, ready, done, keep)
        else:
            body = raw_viewer(url, hello, ready, done)
        tasks.append(asyncio.create_task(body))
        await ready.wait()
    return tasks


async def lab_run(base: str, smtp_port: int, viewers: int, mails: int) -> tuple[dict, list]:
    done: list[float] = []
    frames: list[str] = []
    hello = json.dumps({"type": "hello", "lang": "ja"})
    tasks = await open_viewers(base.replace("http", "ws") + "/ws/lab", hello, viewers, done, frames)
    started = time.perf_counter()
    await asyncio.to_thread(send_mails, smtp_port, mails)
    sent = time.perf_counter() - started
    await asyncio.gather(*tasks)
    spans = [t - started for t in done]
    return {
        "viewers": viewers,
        "events": len(frames),
        "mails_sent_s": sent,
        "all_have_all_s": max(spans),
        "p50_viewer_s": percentile(spans, 50),
    }, frames


async def bare_run(base: str, viewers: int, frames: list[str]) -> dict:
    done: list[float] = []
    tasks = await open_viewers(base.replace("http", "ws") + "/ws", None, viewers, done, [])
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as c:
        await c.post(base + "/broadcast", content=json.dumps(frames))
    await asyncio.gather(*tasks)
    spans = [t - started for t in done]
    return {
        "viewers": viewers,
        "events": len(frames),
        "all_have_all_s": max(spans),
        "p50_viewer_s": percentile(spans, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--mails", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        port, bare_port, offset = free_port(), free_port(), free_lab_offset()
        app = start_process(
            ["-m", "app"],
            {
                "MAILFLOW_PORT": str(port),
                "MAILFLOW_DATA_DIR": data,
                "MAILFLOW_LAB_OFFSET": str(offset),
            },
        )
        bare = start_process(
            [
                "-m",
                "uvicorn",
                "bench.broadcast_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
            ]
        )
        try:
            wait_for_port(port)
            wait_for_port(bare_port)
            lab, frames = asyncio.run(
                lab_run(f"http://127.0.0.1:{port}", 25 + offset, args.viewers, args.mails)
            )
            base = asyncio.run(bare_run(f"http://127.0.0.1:{bare_port}", args.viewers, frames))
        finally:
            for proc in (app, bare):
                proc.terminate()
                proc.wait(timeout=10)
    print(f"{'':16}{'viewers':>8}{'events':>8}{'all have all, s':>17}{'p50 viewer, s':>15}")
    for name, r in (("bare broadcast", base), ("lab live view", lab)):
        print(
            f"{name:16}{r['viewers']:>8}{r['events']:>8}"
            f"{r['all_have_all_s']:>17.2f}{r['p50_viewer_s']:>15.2f}"
        )
    print(f"lab: the {args.mails} mails themselves took {lab['mails_sent_s']:.2f} s to send")
    print(json.dumps({"lab": lab, "bare": base}))


if __name__ == "__main__":
    main()

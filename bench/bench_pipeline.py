"""Lab pipeline throughput: messages per second through submission on 587 (STARTTLS +
AUTH), relay with MX lookup, LMTP and the Maildir, with concurrent clients, next to a
bare aiosmtpd server doing the same STARTTLS + AUTH and discarding the message,
measured in the same run with the same client: after the same untimed warm-up, in
rounds that alternate the two; the verdict is the median of the rounds' ratios.
Timing starts once the app's start-up work (its recording pool) is done, and the CPU
time each process spent per message (/proc/<pid>/stat) is printed for both sides.

    .venv/bin/python bench/bench_pipeline.py --clients 20 --messages 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import aiosmtplib
from common import free_port, start_process, wait_for_port

from app.engines.tls import LabTLS

MESSAGE = (
    b"From: alice@a.example\r\nTo: bob@b.example\r\nSubject: bench\r\n\r\n"
    + (b"x" * 76 + b"\r\n") * 26
)


async def send_all(port: int, ctx, clients: int, messages: int) -> float:
    counter = iter(range(messages))

    async def client() -> None:
        for _ in counter:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
            await smtp.connect()
            await smtp.starttls(tls_context=ctx, server_hostname="mail.a.example")
            await smtp.login("alice@a.example", "alice-pass")
            await smtp.sendmail("alice@a.example", ["bob@b.example"], MESSAGE)
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def free_lab_offset() -> int:
    """An offset at which all seven lab ports are free (the app refuses to start otherwise)."""
    for _ in range(200):
        offset = random.randrange(20000, 50000)
        if all(port_is_free(port + offset) for port in (25, 587, 465, 110, 995, 143, 993)):
            return offset
    raise RuntimeError("no free lab ports")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def delivered(data: Path) -> int:
    box = data / "lab" / "mail" / "bob@b.example"
    return sum(len(os.listdir(box / sub)) for sub in ("new", "cur") if (box / sub).is_dir())


def wait_started(web: int, timeout: float = 120.0) -> None:
    """Wait until the app's start-up work is over: its recording pool is filled. The
    recording worker runs every scenario once at start (several CPU seconds), which
    otherwise fell into the first rounds of both servers."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/healthz", timeout=10) as reply:
            pool = json.load(reply)["recordings"]
        if pool["ready"] >= pool["target"]:
            return
        time.sleep(0.2)
    raise RuntimeError("the recording pool did not fill")


def wait_delivered(data: Path, count: int, timeout: float = 120.0) -> int:
    deadline = time.perf_counter() + timeout
    while (got := delivered(data)) < count and time.perf_counter() < deadline:
        time.sleep(0.01)
    return got


def descendants(root: int) -> list[int]:
    """`root` and every process below it (the app's tree: web, lab, recording worker)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    text = " ".join(part.decode() for part in cmd if part)
    for key, name in (("app.lab.process", "lab"), ("bare_smtpd", "bare"),
                      ("app.scenarios.worker", "recorder")):
        if key in text:
            return name
    return "web"


class CpuMeter:
    """CPU milliseconds per message for each process, summed over the timed rounds."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids  # side ("bare", "lab") -> processes to watch
        self.ms: dict[str, dict[str, float]] = {side: {} for side in pids}
        self.messages: dict[str, int] = dict.fromkeys(pids, 0)

    def snapshot(self, side: str) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in [*self.pids[side], os.getpid()]}

    def add(self, side: str, before: dict[int, float], messages: int) -> None:
        after = self.snapshot(side)
        for pid, start in before.items():
            name = "client" if pid == os.getpid() else role(pid)
            spent = (after[pid] - start) * 1000
            self.ms[side][name] = self.ms[side].get(name, 0.0) + spent
        self.messages[side] += messages

    def report(self) -> str:
        lines = ["CPU ms per message (summed over the timed rounds, /proc/<pid>/stat):"]
        for side, by_name in self.ms.items():
            n = max(1, self.messages[side])
            parts = "  ".join(f"{k} {v / n:.2f}" for k, v in sorted(by_name.items()))
            lines.append(f"  {side:4s}: {parts}  total {sum(by_name.values()) / n:.2f}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=400, help="timed messages per round")
    parser.add_argument("--rounds", type=int, default=7, help="bare/lab pairs, alternating")
    parser.add_argument("--warmup", type=int, default=40, help="untimed messages to each first")
    args = parser.parse_args()
    rounds = []
    meter: CpuMeter | None = None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        offset = free_lab_offset()
        web = free_port()
        app = start_process(
            ["-m", "app"],
            {
                "MAILFLOW_DATA_DIR": str(data),
                "MAILFLOW_PORT": str(web),
                "MAILFLOW_LAB_OFFSET": str(offset),
            },
        )
        bare_port = free_port()
        try:
            wait_for_port(web)
            wait_for_port(587 + offset)
            wait_started(web)
            tls = LabTLS.load(data / "tls")
            bare = start_process(["bench/bare_smtpd.py", str(bare_port), str(data / "tls")])
            wait_for_port(bare_port)
            ctx = tls.client_context

            def run_bare() -> float:
                before = meter.snapshot("bare")
                seconds = asyncio.run(send_all(bare_port, ctx, args.clients, args.messages))
                meter.add("bare", before, args.messages)
                return seconds

            # Both servers get the same untimed warm-up (first handshakes, cached
            # sessions, lazy imports), so the rounds measure the steady state.
            asyncio.run(send_all(bare_port, ctx, args.clients, args.warmup))
            asyncio.run(send_all(587 + offset, ctx, args.clients, args.warmup))
            total = wait_delivered(data, args.warmup)
            meter = CpuMeter({"bare": [bare.pid], "lab": descendants(app.pid)})
            # Alternate the two (and which goes first), so a machine that slows down
            # for a while (shared vCPUs) weighs on both sides of a round alike.
            for i in range(args.rounds):
                if i % 2 == 0:  # the first of the pair in odd rounds, the second in even
                    bare_s = run_bare()
                before = meter.snapshot("lab")
                started = time.perf_counter()
                submit_s = asyncio.run(send_all(587 + offset, ctx, args.clients, args.messages))
                total += args.messages
                count = wait_delivered(data, total) - (total - args.messages)
                pipeline_s = time.perf_counter() - started
                meter.add("lab", before, args.messages)
                if i % 2 == 1:
                    bare_s = run_bare()
                rounds.append(
                    {
                        "bare_msgs_per_s": args.messages / bare_s,
                        "lab_accepted_msgs_per_s": args.messages / submit_s,
                        "lab_delivered_msgs_per_s": count / pipeline_s,
                        "delivered": count,
                    }
                )
        finally:
            app.terminate()
            app.wait(10)
            if "bare" in locals():
                bare.terminate()
                bare.wait(10)
    print(f"{args.clients} clients, {args.messages} messages per round, warm-up {args.warmup}")
    print("round  bare msg/s  lab accepted  lab pipeline  delivered  ratio")
    for i, r in enumerate(rounds, 1):
        r["ratio"] = r["lab_delivered_msgs_per_s"] / r["bare_msgs_per_s"]
        print(
            f"{i:5d}  {r['bare_msgs_per_s']:10.1f}  {r['lab_accepted_msgs_per_s']:12.1f}  "
            f"{r['lab_delivered_msgs_per_s']:12.1f}  {r['delivered']:5d}/{args.messages:<4d}"
            f"  {r['ratio']:.2f}"
        )
    ratio = statistics.median(r["ratio"] for r in rounds)
    if meter is not None:
        print(meter.report())
    print(
        f"median ratio pipeline / bare = {ratio:.2f} (target >= 0.5): "
        f"{'met' if ratio >= 0.5 else 'NOT met'}"
    )
    print(json.dumps({"clients": args.clients, "messages": args.messages, "rounds": rounds}))


if __name__ == "__main__":
    main()

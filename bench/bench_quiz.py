"""Benchmark: many learners answering port-quiz questions against the real app.

Starts the real app (uvicorn, one process, a fresh SQLite file) on a loopback port through
bench/quiz_app.py, which mounts a database-free twin of the answer endpoint. The same
learners then answer through both endpoints in the same run, so the difference is what the
database (one committed transaction per answer: answer row + FSRS card state) costs.

Phases, each a bounded number of answers per learner, the two endpoints alternating in
rounds so both meet the same conditions on a shared machine:
  paced-db / paced-nodb  every learner thinks 1–3 s per question (a fast class drilling)
  burst-db / burst-nodb  no think time at all: the server's ceiling

Only the POST of the answer is timed (fetching the question is not). Client load is spread
over several processes so the client is not the bottleneck.

    .venv/bin/python bench/bench_quiz.py [--learners 200] [--answers 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r'name="token" value="([^"]+)"')
OPTION = re.compile(r'name="answer" value="(\d+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MAILFLOW_DATA_DIR": str(data_dir),
        "MAILFLOW_LAB": "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(ROOT / "bench"),
        "quiz_app:create_bench_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urlopen(f"http://127.0.0.1:{port}/quiz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the app did not start")


class Browser:
    """One learner's keep-alive HTTP/1.1 connection: a few lines instead of a client library,
    so the load generator spends its CPU on sending requests, not on itself."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookie = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = urlencode(form).encode() if form is not None else b""
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "HX-Request: true",
        ]  # what a browser with JavaScript sends
        if self.cookie:
            head.append(f"Cookie: {self.cookie}")
        if form is not None:
            head += [
                "Content-Type: application/x-www-form-urlencoded",
                f"Content-Length: {len(body)}",
            ]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            data = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        if "mf_learner=" in headers.get("set-cookie", ""):
            self.cookie = headers["set-cookie"].split(";", 1)[0]
        return status, headers, data.decode("utf-8")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def learner(
    host: str,
    port: int,
    answers: int,
    target: str,
    think: tuple[float, float],
    rng: random.Random,
    out: list[float],
    errors: list[str],
) -> None:
    browser = Browser(host, port)
    if think[1] > 0:
        await asyncio.sleep(rng.uniform(0, think[1]))  # learners arrive over a few seconds
    try:
        for _ in range(answers):
            status, _h, page = await browser.request("GET", "/quiz/ports?practice=1")
            token = TOKEN.search(page)
            if status != 200 or token is None:
                errors.append(f"GET {status}")
                continue
            options = OPTION.findall(page)
            answer = rng.choice(options) if options else rng.choice(["25", "pop3s", "993"])
            if think[1] > 0:
                await asyncio.sleep(rng.uniform(*think))
            t0 = time.perf_counter()
            status, _h, _body = await browser.request(
                "POST", target, {"token": token.group(1), "answer": answer}
            )
            elapsed = time.perf_counter() - t0
            if status != 200:
                errors.append(f"POST {status}")
                continue
            out.append(elapsed)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        browser.close()


async def run_worker(
    base: str, learners: int, answers: int, target: str, think: tuple[float, float], seed: int
) -> tuple[list[float], list[str], float]:
    host, port = base.removeprefix("http://").split(":")
    rng = random.Random(seed)
    out: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            learner(
                host, int(port), answers, target, think, random.Random(rng.random()), out, errors
            )
            for _ in range(learners)
        )
    )
    return out, errors, time.perf_counter() - t0


def worker_main(
    args: tuple[str, int, int, str, tuple[float, float], int],
) -> tuple[list[float], list[str], float]:
    return asyncio.run(run_worker(*args))


def phase(
    pool: mp.pool.Pool,
    base: str,
    learners: int,
    answers: int,
    workers: int,
    target: str,
    think: tuple[float, float],
    seed: int,
) -> tuple[list[float], list[str], float]:
    """All learners answer `answers` questions each; (latencies, errors, wall seconds)."""
    split = [learners // workers + (1 if i < learners % workers else 0) for i in range(workers)]
    jobs = [(base, n, answers, target, think, seed * 7919 + i) for i, n in enumerate(split)]
    t0 = time.perf_counter()
    results = pool.map(worker_main, jobs)
    wall = time.perf_counter() - t0
    return [x for r in results for x in r[0]], [e for r in results for e in r[1]], wall


def summary(name: str, runs: list[tuple[list[float], list[str], float]]) -> dict[str, Any]:
    lat = sorted(x for r in runs for x in r[0])
    errors = [e for r in runs for e in r[1]]
    wall = sum(r[2] for r in runs)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
    return {
        "phase": name,
        "answers": len(lat),
        "errors": len(errors),
        "per_s": len(lat) / wall if wall else 0.0,
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "p99": q[98] * 1000,
        "max": lat[-1] * 1000 if lat else 0.0,
        "first_error": errors[0] if errors else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", type=int, default=200)
    ap.add_argument("--answers", type=int, default=12, help="answers per learner, paced")
    ap.add_argument("--burst-answers", type=int, default=6, help="answers per learner, burst")
    ap.add_argument("--rounds", type=int, default=3, help="db/nodb alternations")
    ap.add_argument("--workers", type=int, default=1, help="client processes")
    ap.add_argument("--think-min", type=float, default=1.0, help="seconds, paced phases")
    ap.add_argument("--think-max", type=float, default=3.0, help="seconds, paced phases")
    args = ap.parse_args()
    if not 1 <= args.learners <= 2000 or not 1 <= args.answers <= 200 or args.rounds < 1:
        ap.error("keep it bounded: 1–2000 learners, 1–200 answers, ≥ 1 round")

    db, nodb = "/quiz/ports/answer", "/bench/quiz/ports/answer-nodb"
    paced = (args.think_min, args.think_max)
    burst = (0.0, 0.0)
    per_round = max(1, args.answers // args.rounds)
    burst_round = max(1, args.burst_answers // args.rounds)
    runs: dict[str, list[tuple[list[float], list[str], float]]] = {
        "paced-db": [],
        "paced-nodb": [],
        "burst-db": [],
        "burst-nodb": [],
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp:
        port = free_port()
        server = start_server(Path(tmp), port)
        base = f"http://127.0.0.1:{port}"
        try:
            with mp.get_context("spawn").Pool(args.workers) as pool:
                phase(pool, base, min(args.learners, 20), 2, args.workers, db, burst, 0)
                # Alternate the two endpoints so both see the same conditions on this machine.
                for r in range(args.rounds):
                    for name, target, think, n in (
                        ("paced-db", db, paced, per_round),
                        ("paced-nodb", nodb, paced, per_round),
                    ):
                        runs[name].append(
                            phase(pool, base, args.learners, n, args.workers, target, think, r)
                        )
                for r in range(args.rounds):
                    for name, target in (("burst-db", db), ("burst-nodb", nodb)):
                        runs[name].append(
                            phase(
                                pool,
                                base,
                                args.learners,
                                burst_round,
                                args.workers,
                                target,
                                burst,
                                100 + r,
                            )
                        )
            db_size = (Path(tmp) / "mailflow.db").stat().st_size
        finally:
            server.terminate()
            server.wait(timeout=10)
    rows = [summary(name, r) for name, r in runs.items()]

    print(
        f"{args.learners} learners ({args.workers} client process), think "
        f"{args.think_min:g}–{args.think_max:g} s when paced, {args.rounds} alternating "
        f"rounds; server: 1 uvicorn process on {os.cpu_count()} CPUs, SQLite (WAL) "
        f"{db_size // 1024} KiB at the end; load average {load_before:.1f} → "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'phase':<12} {'answers':>8} {'errors':>6} {'ans/s':>8} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for row in rows:
        print(
            f"{row['phase']:<12} {row['answers']:>8} {row['errors']:>6} {row['per_s']:>8.1f} "
            f"{row['p50']:>8.1f} {row['p95']:>8.1f} {row['p99']:>8.1f} {row['max']:>8.1f}"
            + (f"  first error: {row['first_error']}" if row["first_error"] else "")
        )
    paced_db = rows[0]
    ok = float(paced_db["p95"]) <= 50.0
    print(f"target p95 ≤ 50 ms with the database, paced: {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cold start and memory of the embedded default: `python -m app` with a fresh data dir.

Timed: process start → first `/healthz` 200 (the engines probed in the worker process,
the recording pool still empty; certificates are generated on this first start).
Memory: RSS (and PSS, which splits pages shared between processes) of every process of
the app — the web process, the lab's inner process, the recording worker and
multiprocessing's resource tracker — read at three moments: right after /healthz 200,
once the recording pool is filled, and once the worker has stopped for being idle
(`MAILFLOW_RECORD_IDLE`, shortened here with `--idle`).

Baseline in the same run: a bare Starlette app under uvicorn (bench/echo_app.py),
process start → first HTTP answer, and its RSS.

    .venv/bin/python bench/bench_cold_start.py --starts 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port, start_process


def tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += tree(int(child))
    return pids


def memory(pid: int) -> dict[str, object]:
    procs = []
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text().splitlines()
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
            cmd = Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ").strip()
        except OSError:
            continue
        rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
        pss = next(int(x.split()[1]) for x in rollup if x.startswith("Pss:"))
        procs.append({"cmd": cmd[:70], "rss_mib": rss / 1024, "pss_mib": pss / 1024})
    return {
        "rss_mib": sum(p["rss_mib"] for p in procs),
        "pss_mib": sum(p["pss_mib"] for p in procs),
        "processes": procs,
    }


def first_answer(url: str, ok: tuple[int, ...], timeout: float = 60) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code in ok:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def cold_app(offset: int, idle: int, watch: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        env = {
            "MAILFLOW_PORT": str(port),
            "MAILFLOW_DATA_DIR": data,
            "MAILFLOW_LAB_OFFSET": str(offset),
            "MAILFLOW_RECORD_IDLE": str(idle),
        }
        t0 = time.perf_counter()
        proc = start_process(["-m", "app"], env)
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            first_answer(url, (200,))
            result: dict[str, object] = {"cold_s": time.perf_counter() - t0}
            result["at_healthz"] = memory(proc.pid)
            if watch:
                while True:  # the pool fills in the background (worker niced)
                    pool = httpx.get(url, timeout=30).json()["recordings"]
                    if pool["ready"] >= pool["target"]:
                        break
                    time.sleep(1)
                result["fill_s"] = time.perf_counter() - t0
                result["filled"] = memory(proc.pid)
                # Quiet now: a /healthz older than 10 s would probe in the worker again.
                time.sleep(idle + 5)
                result["idle"] = memory(proc.pid)
            return result
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def cold_bare() -> dict[str, float]:
    port = free_port()
    t0 = time.perf_counter()
    proc = start_process(
        ["-m", "uvicorn", "bench.echo_app:app", "--port", str(port), "--log-level", "warning"]
    )
    try:
        first_answer(f"http://127.0.0.1:{port}/", (404,))
        seconds = time.perf_counter() - t0
        return {"cold_s": seconds, "rss_mib": memory(proc.pid)["rss_mib"]}  # type: ignore[dict-item]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--offset", type=int, default=7000, help="MAILFLOW_LAB_OFFSET")
    parser.add_argument("--idle", type=int, default=20, help="MAILFLOW_RECORD_IDLE for the run")
    args = parser.parse_args()
    bare, app = [], []
    for i in range(args.starts):
        bare.append(cold_bare())
        app.append(cold_app(args.offset, args.idle, watch=(i == args.starts - 1)))
        print(f"start {i + 1}: bare {bare[-1]['cold_s']:.2f} s, app {app[-1]['cold_s']:.2f} s")
    last = app[-1]
    print(f"load average {os.getloadavg()[0]:.1f}")
    bare_s = statistics.median(b["cold_s"] for b in bare)
    app_s = statistics.median(a["cold_s"] for a in app)  # type: ignore[misc]
    print(f"cold start, median of {args.starts}: bare {bare_s:.2f} s, app {app_s:.2f} s")
    print(f"bare RSS {bare[-1]['rss_mib']:.1f} MiB")
    for moment in ("at_healthz", "filled", "idle"):
        m = last[moment]  # type: ignore[index]
        print(f"{moment:11} RSS {m['rss_mib']:6.1f} MiB  PSS {m['pss_mib']:6.1f} MiB")
        for p in m["processes"]:
            print(f"    {p['rss_mib']:6.1f} / {p['pss_mib']:6.1f}  {p['cmd']}")
    print(f"pool filled {last['fill_s']:.0f} s after start")
    print(json.dumps({"bare": bare, "app": app}))


if __name__ == "__main__":
    main()

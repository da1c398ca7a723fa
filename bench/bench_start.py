"""Start-up and memory of the embedded default: `python -m app` (lab on, SQLite, one web
worker) until /healthz answers 200, then the RSS of every process of the app.

    flock /tmp/mailflow-bench.lock .venv/bin/python bench/bench_start.py --runs 5

Each run starts the app on free ports. The first run of the data directory is the very
first start (certificates and database made by `app.prepare`); the later runs start
with what it left, as every start after the first does. Timed: process start → first
`/healthz` 200 (the engine probe answered; the recording pool still empty), and the CPU
time all processes used until then (on a shared machine the wall time says more about
the neighbours). Memory, read from /proc for every process of the tree: VmRSS (counts
shared library pages once per process: the figure the target is about) and PSS (shares
them out among the processes that map them), at these moments:

- `at /healthz`: right when /healthz first answers 200, every process alive then;
- `+1 s`: a second later (the pool's filling has started the recording worker);
- with `--watch` (on for the last run): `peak` (the largest sum seen, sampled every
  0.25 s while the pool fills), `filled` (every key holds its recordings) and `idle`
  (after the worker's idle stop, `MAILFLOW_RECORD_IDLE`, shortened to `--idle`).

The app's modules are byte-compiled first, as scripts/serve does (and a wheel install):
this machine sets PYTHONDONTWRITEBYTECODE=1, under which each process would otherwise
compile them at every start.

Baseline in the same run: a bare Starlette app under uvicorn (bench/echo_app.py),
process start → first HTTP answer, and its RSS. (This replaces bench_cold_start.py,
which measured the same with a new data directory every time.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench_pipeline import free_lab_offset
from common import ROOT, free_port


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += tree(int(child))
    return out


def field_kib(path: str, name: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (fields 14 and 15 of its stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def name(pid: int) -> str:
    """`app`, `app.lab.process`, `app.scenarios.worker`, ...: the module it runs."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    args = [a.decode() for a in args if a]
    return args[args.index("-m") + 1] if "-m" in args else " ".join(args)[-60:]


def memory(pid: int) -> dict[str, Any]:
    processes = []
    for p in tree(pid):
        try:
            processes.append(
                {
                    "name": name(p),
                    "rss_kib": field_kib(f"/proc/{p}/status", "VmRSS"),
                    "pss_kib": field_kib(f"/proc/{p}/smaps_rollup", "Pss"),
                    "cpu_seconds": cpu_seconds(p),
                }
            )
        except (OSError, ValueError):  # it exited between being listed and being read
            continue
    return {
        "rss_mib": sum(p["rss_kib"] for p in processes) / 1024,
        "pss_mib": sum(p["pss_kib"] for p in processes) / 1024,
        "processes": processes,
    }


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
            return json.load(r) if r.status == 200 else None
    except (OSError, urllib.error.HTTPError):
        return None


def one_run(data: Path, watch: bool, idle: int) -> dict[str, Any]:
    web = free_port()
    env = {
        **os.environ,
        "MAILFLOW_DATA_DIR": str(data),
        "MAILFLOW_PORT": str(web),
        "MAILFLOW_LAB_OFFSET": str(free_lab_offset()),
        "MAILFLOW_RECORD_IDLE": str(idle),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while health(web) is None:
            if proc.poll() is not None:
                why = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"the app exited ({proc.returncode}): {why}")
            time.sleep(0.02)
        result: dict[str, Any] = {"seconds": time.perf_counter() - started}
        result["at /healthz"] = memory(proc.pid)
        result["cpu_seconds"] = sum(p["cpu_seconds"] for p in result["at /healthz"]["processes"])
        time.sleep(1.0)
        result["+1 s"] = memory(proc.pid)
        if watch:
            peak = result["+1 s"]
            while True:  # the pool fills in the background (the worker is niced)
                body = health(web)
                now = memory(proc.pid)
                peak = max(peak, now, key=lambda m: m["rss_mib"])
                pool = body["recordings"] if body else {"ready": 0, "target": 1}
                if pool["ready"] >= pool["target"]:
                    break
                time.sleep(0.25)
            result["fill_seconds"] = time.perf_counter() - started
            result["peak"], result["filled"] = peak, now
            # Quiet now (the probe runs in the lab process, so /healthz would not keep the
            # worker alive either): wait for the worker's idle stop.
            time.sleep(idle + 3)
            result["idle"] = memory(proc.pid)
    finally:
        proc.terminate()
        proc.wait(20)
    return result


def run_with_free_ports(data: Path, watch: bool, idle: int) -> dict[str, Any]:
    """A port found free may be taken by someone else's connection before the app binds
    it (the lab ports lie in the ephemeral range): such a start is tried again."""
    for _ in range(5):
        try:
            return one_run(data, watch, idle)
        except RuntimeError as exc:
            if "already in use" not in str(exc):
                raise
    raise RuntimeError("no free ports after five tries")


def bare() -> dict[str, float]:
    """The baseline: a bare Starlette app under uvicorn, start → first answer (a 404)."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.echo_app:app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            except urllib.error.HTTPError:
                break  # answered
            except OSError:
                time.sleep(0.01)
        return {
            "seconds": time.perf_counter() - started,
            "rss_mib": memory(proc.pid)["rss_mib"],
        }
    finally:
        proc.terminate()
        proc.wait(20)


def show(moment: str, m: dict[str, Any]) -> None:
    parts = ", ".join(f"{p['name']} {p['rss_kib'] / 1024:.1f}" for p in m["processes"])
    print(f"  {moment:11} RSS {m['rss_mib']:6.1f} MiB  PSS {m['pss_mib']:6.1f} MiB  ({parts})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=int, default=20, help="MAILFLOW_RECORD_IDLE, seconds")
    parser.add_argument("--no-watch", action="store_true", help="skip peak/filled/idle")
    args = parser.parse_args()
    # What scripts/serve does before it starts the app: the app's modules byte-compiled.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "app"], cwd=ROOT, check=True)
    baselines, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for i in range(args.runs):
            baselines.append(bare())
            watch = not args.no_watch and i == args.runs - 1
            runs.append(run_with_free_ports(data, watch, args.idle))
    for i, r in enumerate(runs, 1):
        cpu = ", ".join(
            f"{p['name']} {p['cpu_seconds']:.2f}" for p in r["at /healthz"]["processes"]
        )
        print(
            f"run {i}{' (first start)' if i == 1 else ''}: /healthz 200 after"
            f" {r['seconds']:.2f} s ({r['cpu_seconds']:.2f} s CPU: {cpu});"
            f" bare Starlette {baselines[i - 1]['seconds']:.2f} s"
        )
        for moment in ("at /healthz", "+1 s", "peak", "filled", "idle"):
            if moment in r:
                show(moment, r[moment])
        if "fill_seconds" in r:
            print(f"  pool filled {r['fill_seconds']:.1f} s after start")
    later = runs[1:] or runs
    print(
        f"median of the later starts: {statistics.median(r['seconds'] for r in later):.2f} s "
        f"({statistics.median(r['cpu_seconds'] for r in later):.2f} s CPU), RSS at /healthz "
        f"{statistics.median(r['at /healthz']['rss_mib'] for r in later):.1f} MiB, +1 s "
        f"{statistics.median(r['+1 s']['rss_mib'] for r in later):.1f} MiB; bare Starlette "
        f"{statistics.median(b['seconds'] for b in baselines):.2f} s, "
        f"{statistics.median(b['rss_mib'] for b in baselines):.1f} MiB; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(json.dumps({"runs": runs, "bare": baselines}))


if __name__ == "__main__":
    main()

"""Start-up and memory: `python -m app` until /healthz answers 200, then the RSS of
every process of the app (the web, the lab process and its child), read from /proc.

    .venv/bin/python bench/bench_start.py [--runs 5]

Each run starts the app on free ports with a data directory: the first run of each
directory is the very first start (certificates made, database created), the others
start with what it left. RSS is summed over the process tree (VmRSS, which counts
shared library pages once per process) and, for comparison, PSS (those pages shared
out among the processes that map them).
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
import urllib.request
from pathlib import Path

from bench_pipeline import free_lab_offset
from common import ROOT, free_port


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
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


def cmd(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def one_run(data: Path) -> dict[str, object]:
    web = free_port()
    offset = free_lab_offset()
    env = {
        **os.environ,
        "MAILFLOW_DATA_DIR": str(data),
        "MAILFLOW_PORT": str(web),
        "MAILFLOW_LAB_OFFSET": str(offset),
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
        while not healthy(web):
            if proc.poll() is not None:
                why = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"the app exited ({proc.returncode}): {why}")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        # CPU time used until then: on a machine shared with other work the wall time
        # says more about the neighbours than about the app.
        cpu_each = {p: cpu_seconds(p) for p in tree(proc.pid)}
        cpu = sum(cpu_each.values())
        time.sleep(1.0)  # let the start-up's last allocations (first health probe) settle
        processes = [
            {
                "cmd": cmd(p),
                "rss_kib": field_kib(f"/proc/{p}/status", "VmRSS"),
                "pss_kib": field_kib(f"/proc/{p}/smaps_rollup", "Pss"),
                "cpu_seconds": cpu_each.get(p, 0.0),
            }
            for p in tree(proc.pid)
        ]
    finally:
        proc.terminate()
        proc.wait(20)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_mib": sum(p["rss_kib"] for p in processes) / 1024,
        "pss_mib": sum(p["pss_kib"] for p in processes) / 1024,
        "processes": processes,
    }


def run_with_free_ports(data: Path) -> dict[str, object]:
    """A port found free may be taken by someone else's connection before the app binds
    it (the lab ports lie in the ephemeral range): such a start is tried again."""
    for _ in range(5):
        try:
            return one_run(data)
        except RuntimeError as exc:
            if "already in use" not in str(exc):
                raise
    raise RuntimeError("no free ports after five tries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        runs = [run_with_free_ports(data) for _ in range(args.runs)]
    for i, r in enumerate(runs, 1):
        parts = ", ".join(
            f"{p['cmd'].split()[-1]} {p['rss_kib'] / 1024:.1f} MiB {p['cpu_seconds']:.2f} s CPU"
            for p in r["processes"]
        )
        print(
            f"run {i}{' (first start)' if i == 1 else ''}: /healthz 200 after {r['seconds']:.2f} s"
            f" ({r['cpu_seconds']:.2f} s CPU);"
            f" RSS {r['rss_mib']:.1f} MiB ({parts}); PSS {r['pss_mib']:.1f} MiB"
        )
    later = runs[1:] or runs
    print(
        f"median of the later starts: {statistics.median(r['seconds'] for r in later):.2f} s "
        f"({statistics.median(r['cpu_seconds'] for r in later):.2f} s CPU), "
        f"RSS {statistics.median(r['rss_mib'] for r in later):.1f} MiB, "
        f"PSS {statistics.median(r['pss_mib'] for r in later):.1f} MiB; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(json.dumps(runs))


if __name__ == "__main__":
    main()

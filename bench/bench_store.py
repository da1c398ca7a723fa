"""The store's answer hot path in process, no HTTP: what one stored answer costs.

    flock /tmp/mailflow-bench.lock .venv/bin/python bench/bench_store.py

40 learners × 25 spaced-session answers through `Store.record_port_answer` (answer row,
learner row, FSRS card state; one committed transaction each) on a fresh SQLite file, then
`Store.card_dues` for each learner; the median per call over 5 batches (after one warm-up
batch). Bare baseline in the same run: one answer-sized row through raw sqlite3
(`BEGIN IMMEDIATE` / INSERT / `COMMIT`) on the same kind of file. Run it from a checkout
to measure that checkout's store (bench_quiz.py measures the same over HTTP).
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.study import srs  # noqa: E402
from app.study.store import Store  # noqa: E402

CARDS = ["25", "110", "143", "465", "587", "993", "995"]
LEARNERS = 40
ANSWERS = 25
NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def open_database(url: str) -> Any:
    try:
        from app.study.db import Database
        from app.study.schema import migrate
    except ImportError:  # main before 2026-11-29: the store on a SQLAlchemy engine (A/B)
        from app.study.db import Database, make_engine, migrate  # type: ignore[attr-defined]

        engine = make_engine(url)
        migrate(engine)
        return Database(engine)
    db = Database(url)
    migrate(db)
    return db


def batch(store: Store, tag: str) -> tuple[float, float]:
    learners = [f"{tag}-{i:04d}-4000-8000-{i:012d}" for i in range(LEARNERS)]
    n = 0
    start = time.perf_counter()
    for j in range(ANSWERS):
        for lid in learners:
            store.record_port_answer(
                lid, mode="srs", card=CARDS[(j + n) % len(CARDS)], kind="svc2port",
                given="25", correct=True, ms=5000, nonce=f"{tag}{n}",
                now=NOW + timedelta(seconds=j),
            )  # fmt: skip
            n += 1
    answer = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for lid in learners:
        store.card_dues(lid, NOW)
    return answer, (time.perf_counter() - start) / len(learners)


def bare(path: Path, n: int = LEARNERS * ANSWERS) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS a (id INTEGER PRIMARY KEY, at TEXT, n TEXT UNIQUE)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO a (at, n) VALUES (?, ?)",
            ("2026-04-01 09:00:00.000000", f"{time.time_ns()}-{i}"),
        )
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter() - start) / n


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        db = open_database(f"sqlite:///{tmp}/study.db")
        store = Store(db, srs.make_scheduler(fuzz=False), CARDS)
        batch(store, "warm")
        runs = [batch(store, f"b{k}") for k in range(5)]
        base = [bare(Path(tmp) / "bare.db") for _ in range(5)]
        db.close()
    answer = statistics.median(r[0] for r in runs) * 1e6
    dues = statistics.median(r[1] for r in runs) * 1e6
    print(
        f"record_port_answer {answer:.0f} µs, card_dues {dues:.0f} µs; "
        f"bare sqlite3 insert + commit {statistics.median(base) * 1e6:.0f} µs"
    )


if __name__ == "__main__":
    main()

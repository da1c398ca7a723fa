"""The recording pool: a few real recordings per (scenario, language), ready before asked.

A recording is immutable data from a real run, so any number of learners may share one;
each session holds a reference and its own cursor. A page load takes the pool's current
recording and never waits for a run, unless the pool has none for that scenario and
language yet (the first minutes after a cold start): then it waits for the first one.

    await pool.get(slug, lang)    # shared recording (waits only when the pool is empty)
    await pool.fresh(slug, lang)  # a private new run ("record afresh"), never shared

Refills run in the worker process (app/web/record_worker.py) with low priority, one at a
time: after start the pool is filled in order (every key once, then every key again),
and a recording is replaced once it has served `max_uses` sessions or is older than
`max_age` when someone asks for it. The replaced one stays in service until its
replacement is in. Memory: at most `per_key` recordings per key are held here (plus
whatever sessions still point at).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from app.scenarios import worker
from app.scenarios.recording import Recording
from app.web.record_worker import BACKGROUND, FOREGROUND, RecordWorker

Key = tuple[str, str]  # (scenario slug, language)

PER_KEY = 2
MAX_USES = 200  # sessions served by one recording before a new run replaces it
MAX_AGE = 3600.0  # seconds; an older recording is replaced when next asked for
RETRY_AFTER = 60.0  # a key whose run failed is not refilled again before this


@dataclass
class _Entry:
    recording: Recording
    born: float = field(default_factory=time.monotonic)
    uses: int = 0


class RecordingPool:
    def __init__(
        self,
        worker_: RecordWorker,
        keys: Iterable[Key],
        *,
        per_key: int = PER_KEY,
        max_uses: int = MAX_USES,
        max_age: float = MAX_AGE,
        alone: Collection[str] = (),
    ) -> None:
        self.worker = worker_
        self.alone = frozenset(alone)  # scenarios run in a worker of their own (S/MIME)
        self.keys: list[Key] = list(keys)
        self.per_key = per_key
        self.max_uses = max_uses
        self.max_age = max_age
        self.runs = 0  # finished runs, pooled and private
        self.pooled_runs: Counter[Key] = Counter()  # finished runs that went into the pool
        self.waits = 0  # get() calls that found the pool empty and waited for a run
        self.last_error: str | None = None
        self._entries: dict[Key, list[_Entry]] = {}
        self._inflight: dict[Key, list[asyncio.Future[Recording]]] = {}
        self._failed: dict[Key, float] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._filler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # refills under way

    # -- the API ----------------------------------------------------------------
    async def get(self, slug: str, lang: str) -> Recording:
        """The shared recording for (slug, lang); waits only if the pool has none yet."""
        key = (slug, lang)
        entries = self._entries.get(key)
        if not entries:
            self.waits += 1
            inflight = self._inflight.get(key)
            # A refill of this key under way is waited for; else one goes to the front.
            future = inflight[0] if inflight else self._start_refill(key, FOREGROUND)
            # Shielded: a learner who leaves does not cancel the run others may wait for.
            await asyncio.shield(future)
            entries = self._entries[key]
        entry = self._pick(entries)
        entry.uses += 1
        if not self._fresh(entry):
            self._wake.set()  # used up or old: the filler records its replacement
        return entry.recording

    async def fresh(self, slug: str, lang: str) -> Recording:
        """A private new run, for one learner only (never put in the pool)."""
        recording = await self._run((slug, lang), FOREGROUND)
        return recording

    def start(self) -> None:
        """Start filling the pool in the background (needs a running event loop)."""
        if self.per_key > 0 and self._filler is None:
            self._filler = asyncio.create_task(self._fill(), name="recording-pool-fill")

    async def wait_ready(self, slug: str, lang: str, count: int | None = None) -> None:
        """Wait until (slug, lang) holds `count` fresh recordings (default: per_key)."""
        want = self.per_key if count is None else count
        async with self._changed:
            await self._changed.wait_for(lambda: self.fresh_count((slug, lang)) >= want)

    async def wait_filled(self) -> None:
        """Wait until every key holds per_key fresh recordings."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ready == self.target)

    def fresh_count(self, key: Key) -> int:
        return sum(1 for e in self._entries.get(key, ()) if self._fresh(e))

    @property
    def ready(self) -> int:
        return sum(min(self.fresh_count(k), self.per_key) for k in self.keys)

    @property
    def target(self) -> int:
        return len(self.keys) * self.per_key

    def stats(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "target": self.target,
            "held": sum(len(v) for v in self._entries.values()),
            "runs": self.runs,
            "waits": self.waits,
            "worker": "running" if self.worker.running else "stopped",
        }

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._filler] if self._filler else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._filler = None

    # -- inside -----------------------------------------------------------------
    def _fresh(self, entry: _Entry) -> bool:
        return entry.uses < self.max_uses and time.monotonic() - entry.born < self.max_age

    def _pick(self, entries: list[_Entry]) -> _Entry:
        # The oldest fresh one, so a class opening a link together shares one run;
        # when all are used up, the newest keeps serving until its replacement is in.
        for entry in entries:
            if self._fresh(entry):
                return entry
        return entries[-1]

    async def _run(self, key: Key, priority: int) -> Recording:
        try:
            recording = await self.worker.call(
                priority, worker.record, *key, alone=key[0] in self.alone
            )
        except Exception as exc:  # surfaced on /healthz and to the learner
            self.last_error = f"{key[0]}: {exc.__class__.__name__}: {exc}"
            raise
        self.runs += 1
        self.last_error = None
        return recording

    def _start_refill(self, key: Key, priority: int) -> asyncio.Future[Recording]:
        """A run for the pool, as its own task; the future resolves once it is in."""
        future: asyncio.Future[Recording] = asyncio.get_running_loop().create_future()
        self._inflight.setdefault(key, []).append(future)
        task = asyncio.create_task(self._refill(key, priority, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _refill(self, key: Key, priority: int, future: asyncio.Future[Recording]) -> None:
        try:
            recording = await self._run(key, priority)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            self._failed[key] = time.monotonic()
            future.set_exception(exc)
            future.exception()  # retrieved: a failed refill nobody waited for is no error
        else:
            self.pooled_runs[key] += 1
            self._add(key, recording)
            future.set_result(recording)
        finally:
            self._inflight[key].remove(future)

    def _add(self, key: Key, recording: Recording) -> None:
        entries = self._entries.setdefault(key, [])
        entries.append(_Entry(recording))
        while len(entries) > max(self.per_key, 1):
            stale = next((e for e in entries if not self._fresh(e)), entries[0])
            entries.remove(stale)  # sessions that hold it keep it; the pool lets go
        self._failed.pop(key, None)
        self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def _most_needed(self) -> Key | None:
        """The key with the fewest fresh-or-coming recordings below per_key (keys order
        breaks ties, so every key gets its first recording before any gets a second)."""
        now = time.monotonic()
        best: tuple[int, Key] | None = None
        for key in self.keys:
            if now - self._failed.get(key, -RETRY_AFTER) < RETRY_AFTER:
                continue
            have = self.fresh_count(key) + len(self._inflight.get(key, ()))
            if have < self.per_key and (best is None or have < best[0]):
                best = (have, key)
        return best[1] if best else None

    async def _fill(self) -> None:
        while True:
            key = self._most_needed()
            if key is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_AFTER)
                continue
            with contextlib.suppress(Exception):  # noted in last_error, retried later
                await asyncio.shield(self._start_refill(key, BACKGROUND))

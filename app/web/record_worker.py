"""The worker process that runs scenarios and health probes for the web process.

The web process never starts a mail server: every scenario run and every engine probe
is a job for a `ProcessPoolExecutor` (spawn context, so the worker does not inherit the
web process's sockets, threads or event loop). Jobs come with a priority: a learner
waiting (an empty pool, "record afresh", /healthz) goes before the pool's background
refills. The executor is given at most one job per worker at a time, so a waiting
learner waits for at most the run already under way, never for a queue of refills.

The worker is started on the first job and stopped after `idle_stop` seconds without
one (its ~45 MB of engines are not kept while nobody needs a run); the next job starts
it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from app.scenarios import worker

FOREGROUND = 0  # someone is waiting for this job
BACKGROUND = 1  # a refill of the pool

T = TypeVar("T")
# (priority, order of arrival, function, arguments, the caller's future)
_Job = tuple[int, int, Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]


class RecordWorker:
    def __init__(
        self,
        tls_dir: Path,
        runs_dir: Path,
        *,
        workers: int = 1,
        idle_stop: float = 0.0,
        nice: int = worker.NICE,
    ) -> None:
        self.tls_dir = tls_dir
        self.runs_dir = runs_dir
        self.workers = max(1, workers)
        self.idle_stop = idle_stop  # seconds; 0 keeps the worker for the app's lifetime
        self.nice = nice
        self.jobs_done = 0
        self.starts = 0  # how many times an executor was started (cold starts of the worker)
        self._executor: ProcessPoolExecutor | None = None
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._dispatchers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.stopped_idle = asyncio.Event()  # set each time an idle worker is let go

    async def call(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the worker process; `fn` must be a module-level function."""
        if self._closed:
            raise RuntimeError("the record worker is closed")
        if not self._dispatchers:
            self._dispatchers = [
                asyncio.create_task(self._dispatch(), name=f"record-dispatch-{i}")
                for i in range(self.workers)
            ]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((priority, next(self._order), fn, args, future))
        # The job outlives a caller who stops waiting (a closed tab): its result still
        # lands, e.g. in the pool. Shielding keeps the caller's cancellation local.
        return await asyncio.shield(future)

    def _ensure_executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker.init,
                initargs=(str(self.tls_dir), str(self.runs_dir), self.nice),
            )
            self.starts += 1
        return self._executor

    async def _dispatch(self) -> None:
        while True:
            _, _, fn, args, future = await self._queue.get()
            if future.cancelled():
                continue
            self._busy += 1
            self._cancel_idle_timer()
            self.stopped_idle.clear()
            try:
                executor = self._ensure_executor()
                result = await asyncio.wrap_future(executor.submit(fn, *args))
            except BrokenProcessPool as exc:
                # The worker died (killed, out of memory): the next job starts a new one.
                if self._executor is not None:
                    self._executor.shutdown(wait=False)
                    self._executor = None
                if not future.done():
                    future.set_exception(exc)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                self.jobs_done += 1
                if not future.done():
                    future.set_result(result)
            finally:
                self._busy -= 1
                self._arm_idle_timer()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _arm_idle_timer(self) -> None:
        if self.idle_stop <= 0 or self._busy or not self._queue.empty():
            return
        self._cancel_idle_timer()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self.idle_stop, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle_timer = None
        if self._busy or not self._queue.empty() or self._executor is None:
            return
        executor, self._executor = self._executor, None
        executor.shutdown(wait=False)  # no job is running: the worker exits at once
        self.stopped_idle.set()

    @property
    def running(self) -> bool:
        return self._executor is not None

    async def close(self) -> None:
        self._closed = True
        self._cancel_idle_timer()
        for task in self._dispatchers:
            task.cancel()
        for task in self._dispatchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dispatchers = []
        while not self._queue.empty():
            *_, future = self._queue.get_nowait()
            future.cancel()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # Waits for a run under way (≤ a second or so), off the event loop.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

"""The worker process that runs scenarios for the web process.

The web process never starts a mail server: every scenario run is a job for a worker
process, `python -m app.scenarios.worker`, started with a pipe of our own (length-
prefixed pickle frames on its stdin and stdout, app/scenarios/worker.py). Not a
`multiprocessing` pool: spawn and forkserver start multiprocessing's resource tracker
as well, a third process of 13 MB RSS that guards shared memory this app never uses,
and spawn re-imports the web's `__main__` in the child.

Jobs come with a priority: a learner waiting (an empty pool, "record afresh") goes
before the pool's background refills. Each worker is given one job at a time, so a
waiting learner waits for at most the run already under way, never for a queue of
refills.

The worker is started on the first job and stopped after `idle_stop` seconds without
one (its engines are not kept while nobody needs a run); the next job starts it again.
A worker whose job imported a library that costs it more than half its size again
(`worker.HEAVY`: `cryptography`, for S/MIME) says so in its answer and exits after it.
A job the caller knows to be such (`alone`: the S/MIME scenario) also starts in a new
worker: one that has run other scenarios carries their engines and libraries, and with
`cryptography` on top it was the app's largest moment (47 MiB against 43 fresh).
A worker that dies is replaced on the next job; a worker whose web process dies (even
by `kill -9`) is sent SIGTERM by the kernel on Linux, even in the middle of a job, and
elsewhere sees its stdin close and exits after the job under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from app.scenarios import worker

FOREGROUND = 0  # someone is waiting for this job
BACKGROUND = 1  # a refill of the pool
ROOT = Path(__file__).resolve().parent.parent.parent
STOP_SECONDS = 10.0  # a worker that does not exit this long after its stdin closed is killed

T = TypeVar("T")
# (priority, order of arrival, function, arguments, alone, the caller's future)
_Job = tuple[int, int, Callable[..., Any], tuple[Any, ...], bool, asyncio.Future[Any]]


class WorkerDied(RuntimeError):
    """The worker process ended during a job (killed, out of memory)."""


class _Child:
    """One worker process and its pipe: a job is a frame out, its result a frame back."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.retiring = False  # its last answer said it exits now (worker.HEAVY)
        self.jobs = 0  # jobs it has run

    @classmethod
    async def start(cls, config: tuple[str, str, int]) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.scenarios.worker",
            str(os.getpid()),  # the worker ends when this process does (worker.serve)
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        child = cls(proc)
        child._send(config)
        return child

    def _send(self, value: object) -> None:
        assert self.proc.stdin is not None
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)

    async def run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.jobs += 1
        try:
            self._send((fn, args))  # a module-level function pickles as its name
            await self.proc.stdin.drain()
            head = struct.unpack(">I", await self.proc.stdout.readexactly(4))[0]
            self.retiring = bool(head & worker.RETIRE)
            frame = await self.proc.stdout.readexactly(head & ~worker.RETIRE)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WorkerDied(f"the worker process ended ({self.proc.returncode})") from exc
        try:
            ok, value = pickle.loads(frame)
        except Exception as exc:
            # An exception whose __init__ wants more than its args pickles in the worker
            # but cannot be rebuilt here; say what came instead of a baffling TypeError.
            raise RuntimeError(f"a worker reply that does not unpickle: {exc!r}") from exc
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def stop(self) -> None:
        """Close its stdin: the worker exits once the job under way (if any) is done."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


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
        self.starts = 0  # how many worker processes were started (cold starts)
        self._children: list[_Child | None] = [None] * self.workers
        self._stopping: set[asyncio.Task[None]] = set()
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._dispatchers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.stopped_idle = asyncio.Event()  # set each time an idle worker is let go

    async def call(
        self, priority: int, fn: Callable[..., T], *args: Any, alone: bool = False
    ) -> T:
        """Run `fn(*args)` in the worker process; `fn` must be a module-level function.
        `alone`: in a worker that has run nothing else (one that has is let go first)."""
        if self._closed:
            raise RuntimeError("the record worker is closed")
        if not self._dispatchers:
            self._dispatchers = [
                asyncio.create_task(self._dispatch(i), name=f"record-dispatch-{i}")
                for i in range(self.workers)
            ]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((priority, next(self._order), fn, args, alone, future))
        # The job outlives a caller who stops waiting (a closed tab): its result still
        # lands, e.g. in the pool. Shielding keeps the caller's cancellation local.
        return await asyncio.shield(future)

    async def _child(self, slot: int) -> _Child:
        child = self._children[slot]
        if child is not None and child.proc.returncode is not None:
            child = None  # it died between jobs (killed): start another for this one
        if child is None:
            child = await _Child.start((str(self.tls_dir), str(self.runs_dir), self.nice))
            self._children[slot] = child
            self.starts += 1
        return child

    async def _dispatch(self, slot: int) -> None:
        while True:
            _, _, fn, args, alone, future = await self._queue.get()
            if future.cancelled():
                continue
            self._busy += 1
            self._cancel_idle_timer()
            self.stopped_idle.clear()
            try:
                used = self._children[slot]
                if alone and used is not None and used.jobs:
                    # Gone before the new one starts: never two workers at once.
                    self._children[slot] = None
                    await asyncio.shield(self._stop_later(used))
                result = await (await self._child(slot)).run(fn, args)
            except WorkerDied as exc:
                # The next job starts a new one.
                dead, self._children[slot] = self._children[slot], None
                if dead is not None:
                    self._stop_later(dead)
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
                child, stopping = self._children[slot], None
                if child is not None and child.retiring:
                    # It loaded a library it would keep for its whole life (S/MIME's
                    # `cryptography`) and exits after this answer: the next job starts
                    # a new worker without it, once this one is gone (never two at once;
                    # the caller already has its answer).
                    self._children[slot] = None
                    stopping = self._stop_later(child)
                self._busy -= 1
                self._arm_idle_timer()
            if stopping is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(stopping)

    def _stop_later(self, child: _Child) -> asyncio.Task[None]:
        task = asyncio.create_task(child.stop(), name="record-worker-stop")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return task

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
        if self._busy or not self._queue.empty() or not self.running:
            return
        for slot, child in enumerate(self._children):
            if child is not None:
                self._children[slot] = None
                self._stop_later(child)  # no job is running: the worker exits at once
        self.stopped_idle.set()

    @property
    def running(self) -> bool:
        return any(child is not None for child in self._children)

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
        children = [c for c in self._children if c is not None]
        self._children = [None] * self.workers
        # Each finishes the run under way (≤ a second or so) and exits.
        await asyncio.gather(*(c.stop() for c in children), *self._stopping)

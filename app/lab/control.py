"""The web's handle on the lab process: start it, hear its events, ask it, restart it.

`python -m app` serves the web; the lab's mail listeners run in a process of their
own (app/lab/process.py). This object starts that process, passes its events to the
live view's sink, forwards the viewer's and reset's requests, and starts a new one
whenever it dies. The web never waits for a mail server: a request to a lab that is
restarting is answered "unavailable" at once rather than held.

`python -m app` starts the first lab process (`prestart()`) before it imports the web
stack, so the lab imports its engines on the other core meanwhile; it waits for its
configuration on stdin, which `LabProcess.start` writes once the web's loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.engines.tls import LabTLS
from app.events import Event, Sink
from app.lab.channel import subscribe
from app.lab.child import ROOT, configure, shared_config, spawn
from app.lab.restarts import Restarts
from app.topology import PortInUse
from app.world.accounts import Accounts

log = logging.getLogger("mailflow.lab")
START_SECONDS = 30.0
REQUEST_SECONDS = 10.0  # a viewer or reset request the lab does not answer by then fails


class LabUnavailable(RuntimeError):
    """The lab process is not running right now (it is being restarted)."""


_prestarted: subprocess.Popen[bytes] | None = None


def prestart() -> None:
    """Start a lab process now, before there is an event loop; the first
    `LabProcess.start()` adopts it. A process nobody adopts sees its stdin close when
    this one exits, and exits too."""
    global _prestarted
    _prestarted = subprocess.Popen(
        [sys.executable, "-m", "app.lab.process"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def _reap(popen: subprocess.Popen[bytes]) -> None:
    """A dead pre-started process: collect its exit status and close our pipe ends."""
    popen.wait()  # already exited (poll() said so): this does not block
    for pipe in (popen.stdin, popen.stdout):
        if pipe is not None:
            pipe.close()


class _Adopted:
    """A lab process from `prestart()`, with the parts of `asyncio.subprocess.Process`
    that LabProcess and Restarts use."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout

    @classmethod
    async def adopt(cls, popen: subprocess.Popen[bytes]) -> _Adopted:
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        # A StreamReaderProtocol is also the flow control a StreamWriter's drain needs.
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), popen.stdin
        )
        return cls(popen, asyncio.StreamWriter(transport, protocol, None, loop), reader)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        # Not asyncio's child watcher (the process predates the loop): a thread waits.
        return await asyncio.to_thread(self._popen.wait)

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()


class LabProcess:
    def __init__(
        self,
        data_dir: Path,
        tls: LabTLS,
        accounts: Accounts,
        sink: Sink,
        *,
        host: str,
        ports: dict[str, int],
    ) -> None:
        self.dir = Path(data_dir)
        self.tls = tls
        self.accounts = accounts
        self.sink = sink
        self.host = host
        self.ports = dict(ports)
        self.runs = 0
        self._proc: asyncio.subprocess.Process | _Adopted | None = None
        self._reader: asyncio.Task[None] | None = None
        self._restarter: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._closing = False
        self._restarts = Restarts("the lab process")
        self.ready = asyncio.Event()  # set while a lab process serves

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the lab process and wait until its listeners are up."""
        global _prestarted
        self._closing = False
        self.runs += 1
        proc: asyncio.subprocess.Process | _Adopted
        if _prestarted is not None and _prestarted.poll() is not None:
            # It died before anyone adopted it: reap it and let go of its pipes now
            # rather than holding them until this process exits.
            _reap(_prestarted)
            _prestarted = None
        if _prestarted is not None:
            popen, _prestarted = _prestarted, None
            proc = await _Adopted.adopt(popen)
        else:
            proc = await spawn("app.lab.process")
        config = {
            **shared_config(self.dir, self.tls.directory, self.accounts),
            "host": self.host,
            "ports": self.ports,
            # Session ids restart in a new process; the prefix keeps them apart.
            "session_prefix": "" if self.runs == 1 else f"r{self.runs}-",
        }
        hello = await configure(proc, config, START_SECONDS)
        if "ports" not in hello:
            await proc.wait()
            if "error" in hello:
                raise PortInUse(hello["error"])
            raise RuntimeError(f"the lab process exited ({proc.returncode})")
        self._proc = proc
        self._restarts.mark_started()
        self.ports = {name: int(port) for name, port in hello["ports"].items()}
        self._reader = asyncio.create_task(self._read(proc), name="lab-events")
        self.ready.set()

    async def _read(self, proc: asyncio.subprocess.Process | _Adopted) -> None:
        assert proc.stdout is not None
        async for events, replies in subscribe(proc.stdout):
            for fields in events:
                try:
                    self.sink(Event(*fields))
                except Exception:  # one bad event must not stop the ones that follow
                    log.exception("bad event from the lab process")
            for request_id, answer in replies:
                future = self._waiting.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(answer)
            # Frames already buffered are read without a pause; let the viewers' pumps
            # send this frame's events before the next is published on top of them.
            await asyncio.sleep(0)
        self.ready.clear()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LabUnavailable("the lab process exited"))
        self._waiting.clear()
        if not self._closing:
            self._restarter = asyncio.create_task(self._restart(proc), name="lab-restart")

    async def _restart(self, dead: asyncio.subprocess.Process | _Adopted) -> None:
        await self._restarts.after(dead, self.start, self._stop, lambda: self._closing)

    async def request(self, op: str, **args: Any) -> Any:
        """Ask the lab process; its answer, or LabUnavailable while it restarts."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing() or not self.ready.is_set():
            raise LabUnavailable("the lab process is restarting")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        proc.stdin.write(json.dumps({"id": request_id, "op": op, **args}).encode() + b"\n")
        try:
            reply = await asyncio.wait_for(future, REQUEST_SECONDS)
        finally:
            self._waiting.pop(request_id, None)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["ok"]

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # EOF: the lab closes its listeners and exits
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None

    async def close(self) -> None:
        self._closing = True
        if self._restarter is not None:
            self._restarter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarter
            self._restarter = None
        await self._stop()

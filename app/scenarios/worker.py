"""What runs inside the recording worker process (never in the web process).

`python -m app.scenarios.worker` is started by the web (app/web/record_worker.py) with
a pipe of its own: the first frame on stdin is the configuration, each next one a job
(a module-level function of this module and its arguments); each answer goes back on
stdout as one frame. EOF on stdin (the web stopped, or died even by `kill -9`) ends the
process; on Linux the web's death ends it even in the middle of a job (`_end_with`).
This module imports nothing heavy at the top: the web process imports it only to name
the functions, and the engines, the runner and the scenario actions are
imported in the worker on its first job.

The worker keeps one event loop for its whole life, so connections a run leaves
closing finish in the background of the next job instead of being cancelled.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.scenarios.runner import Recording

NICE = 10  # scenario runs yield the CPU to the web process's requests
# Libraries a few scenarios need that make this process much bigger for as long as it
# lives: `cryptography` (S/MIME) is about 20 MiB of RSS, more than half of a worker
# that runs every other scenario. A job that imported one is answered with "retire":
# the worker exits after it and the next job starts a worker without it.
HEAVY = ("cryptography",)
# Set in an answer's length prefix (frames stay far below 2 GiB): this worker exits now.
# Outside the pickle, so the web reads it even from an answer it cannot unpickle.
RETIRE = 1 << 31


_state: dict[str, Any] = {}


def init(tls_dir: str, runs_dir: str, nice: int = NICE) -> None:
    """Remember where to work and how nice to be (the first frame's configuration)."""
    _state["tls_dir"] = Path(tls_dir)
    _state["runs_dir"] = Path(runs_dir)
    _state["nice"] = nice


def _read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError
    size = struct.unpack(">I", head)[0]
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


def _write_frame(stream: IO[bytes], value: object, flags: int = 0) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">I", len(data) | flags) + data)
    stream.flush()


def _end_with(parent: int) -> None:
    """Have the kernel send SIGTERM when `parent` (the web process) dies, even by
    `kill -9` in the middle of a hanging job, when stdin EOF would never be read.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere stdin EOF between jobs is all there
    is. The signal comes when the thread that started this process ends: the web starts
    workers from its event loop thread, which lives as long as the web does."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        return  # not fatal: stdin EOF still ends this process between jobs
    if os.getppid() != parent:
        # The web died before prctl took effect: nobody will send the signal now.
        os.kill(os.getpid(), signal.SIGTERM)


def serve(parent: int | None = None) -> int:
    """The worker's main loop: configuration, then one job after another until EOF."""
    if parent is not None:
        _end_with(parent)
    jobs = sys.stdin.buffer
    # Answers get a file descriptor of their own; anything printed by a library goes to
    # stderr instead of into the frames.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        init(*_read_frame(jobs))
        while True:
            fn, args = _read_frame(jobs)
            try:
                reply: tuple[bool, Any] = (True, fn(*args))
            except Exception as exc:
                reply = (False, exc)
            retire = any(name in sys.modules for name in HEAVY)
            flags = RETIRE if retire else 0
            try:
                _write_frame(answers, reply, flags)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                # An exception that does not pickle still reaches the web, as text.
                _write_frame(answers, (False, RuntimeError(f"{reply[1]!r} ({exc})")), flags)
            if retire:
                return 0  # (HEAVY) the web starts a new worker for the next job
    except (EOFError, BrokenPipeError):
        return 0  # the web process is gone or let this worker go


def _be_nice() -> None:
    # Lowered on the first scenario run, not at start: with the lab off the first job is
    # the start-up health probe, which /healthz (and so a cold start) waits for. A
    # process can only lower its own priority, so from then on everything here yields.
    nice = _state.pop("nice", 0)
    if nice:
        os.nice(nice)


def _loop() -> asyncio.AbstractEventLoop:
    loop = _state.get("loop")
    if loop is None:
        loop = _state["loop"] = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def _tls() -> Any:
    if "tls" not in _state:
        from app.engines.tls import LabTLS

        _state["tls"] = LabTLS.load(_state["tls_dir"])
    return _state["tls"]


def record(slug: str, lang: str) -> Recording:
    """Run one scenario for real and return its recording (pickled back to the web)."""
    from app.scenarios.model import load_all
    from app.scenarios.runner import run_scenario

    _be_nice()
    if "scenarios" not in _state:
        _state["scenarios"] = load_all()
    scenario = _state["scenarios"][slug]
    return _loop().run_until_complete(run_scenario(scenario, _tls(), _state["runs_dir"], lang))


def probe() -> dict[str, str]:
    """The engine health probe (app/engine_probe.py), when the lab does not answer it."""
    from app import engine_probe

    return _loop().run_until_complete(engine_probe.probe(_state["runs_dir"], _tls()))


def pid() -> int:
    return os.getpid()


if __name__ == "__main__":
    # `python -m app.scenarios.worker`: serve under the module's real name, so the
    # functions the web names (app.scenarios.worker.record) share this module's state.
    import signal

    from app.scenarios.worker import serve as _serve

    # Ctrl-C reaches the whole process group; this process stops when the web does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else None))

"""`MAILFLOW_WEB_WORKERS=N`: N web processes behind the one port.

The supervisor binds the port once and starts N worker processes that all accept on
that socket (the kernel hands each new connection to one of them). Worker 0 also runs
the lab's mail listeners (they stay in one process: POP3's maildrop lock and the queues
are per process); the others serve pages and websockets only. Rooms and the lab's live
view are shared through Redis (MAILFLOW_REDIS_URL), which Settings.check() requires.
A worker that dies is started again.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from app.config import Settings
from app.web.serving import serve


def _bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host.strip("[]"), settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def lab_socket_path(settings: Settings) -> Path:
    return settings.data_dir / "lab-web.sock"


def run_worker(
    index: int, settings: Settings, sock: socket.socket, lab_sock: socket.socket | None
) -> None:
    from app.web.app import create_app

    os.environ["MAILFLOW_WORKER_INDEX"] = str(index)
    runs_lab = settings.lab and index == 0
    own = replace(settings, lab=runs_lab, web_workers=1)
    forward = lab_socket_path(settings) if settings.lab and not runs_lab else None
    app = create_app(own, lab_bridge=settings.lab, lab_forward=forward)
    sockets = [sock] if lab_sock is None or not runs_lab else [sock, lab_sock]
    serve(app, sockets=sockets)


def _bind_lab_socket(settings: Settings) -> socket.socket | None:
    """Worker 0's private door for `/lab` requests the other workers forward."""
    if not settings.lab:
        return None
    path = lab_socket_path(settings)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    path.chmod(0o600)
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def prepare(settings: Settings) -> None:
    """Certificates, migrations and signing keys, once, before the workers race to make
    them (two workers writing a fresh CA at once would leave a key and a certificate
    that do not match)."""
    from app.engines.tls import LabTLS
    from app.study.setup import init_study

    LabTLS.load(settings.tls_dir)

    study = init_study(settings)
    study.store.secret("teacher-key")
    study.close()


def supervise(settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare(settings)
    sock = _bind(settings)
    lab_sock = _bind_lab_socket(settings)
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, BaseProcess] = {}
    stopping = False

    def start(index: int) -> None:
        proc = ctx.Process(
            target=run_worker, args=(index, settings, sock, lab_sock), name=f"web-{index}"
        )
        proc.start()
        procs[index] = proc

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(settings.web_workers):
        start(index)
    print(f"mailflow: {settings.web_workers} web workers on port {settings.port}", flush=True)
    try:
        while not stopping:
            for index, proc in list(procs.items()):
                if not proc.is_alive() and not stopping:
                    print(
                        f"mailflow: web worker {index} exited; starting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    start(index)
            time.sleep(0.5)  # a supervisor's watch interval, not a wait for a result
    finally:
        for proc in procs.values():
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.join(timeout=15)
        sock.close()
        if lab_sock is not None:
            lab_sock.close()
            lab_socket_path(settings).unlink(missing_ok=True)
    return 0

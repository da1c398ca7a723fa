"""The lab process: `python -m app.lab.process`, every mail listener of the lab.

The web process never runs a mail server: it starts this process (app/lab/control.py)
and restarts it if it dies. This process runs the seven public listeners (SMTP,
submission, POP3, IMAP with their TLS variants), the sandbox's internal hops (the MX of
both domains, the MDA behind LMTP, app/lab/inner.py) and both stages of the queue, on
one event loop (LabWorld, app/lab/world.py).
It imports no web framework: FastAPI, Jinja and SQLAlchemy stay in the web process.

Over stdin/stdout:

- stdin, first line, JSON: {"data_dir", "tls_dir", "passwords", "domains", "host",
  "ports", "session_prefix"} (on stdin rather than the command line, where `ps` would
  show the passwords); then one JSON request per line, {"id": n, "op": ...}:
  "reset", "mailbox" {account, folder}, "message" {account, folder, uid}, "probe"
  (the engine health probe of `/healthz`, app/engine_probe.py, run here so the web
  needs no recording worker for it).
  EOF means the web process is gone: this process closes its listeners, lets the
  deliveries in flight finish up to their queue clean-up and exits; SIGTERM does the
  same (app/lab/shutdown.py).
- stdout, first line, JSON: {"ports": {...}} once every listener is up, or
  {"error": "..."} (a busy port, named with the setting to change) before exiting 2;
  then frames of events and replies (app/lab/channel.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from app import engine_probe
from app.engines.tls import LabTLS
from app.events import Event
from app.lab import viewer
from app.lab.channel import PipePublisher, event_fields
from app.lab.child import run_main
from app.lab.shutdown import Stop
from app.lab.world import LabWorld, PortInUse
from app.world.accounts import Accounts

log = logging.getLogger("mailflow.lab.process")


async def answer(lab: LabWorld, request: dict[str, Any]) -> Any:
    op = request.get("op")
    if op == "reset":
        return lab.reset_mailboxes()
    if op == "probe":
        # A throwaway world beside the lab's own (its events go nowhere), under the lab's
        # data directory so it never lands on another filesystem.
        return await engine_probe.probe(lab.dir / "probe", lab.tls)
    if op == "mailbox":
        return await viewer.mailbox(lab, str(request["account"]), str(request["folder"]))
    if op == "message":
        return await viewer.message(
            lab, str(request["account"]), str(request["folder"]), int(request["uid"])
        )
    raise ValueError(f"unknown request {op!r}")


async def serve_requests(lab: LabWorld, out: PipePublisher, reader: asyncio.StreamReader) -> None:
    tasks: set[asyncio.Task[None]] = set()

    async def one(request: dict[str, Any]) -> None:
        try:
            result: Any = {"ok": await answer(lab, request)}
        except Exception as exc:  # the web gets the error; the lab goes on serving
            log.exception("lab request %r failed", request.get("op"))
            result = {"error": f"{exc.__class__.__name__}: {exc}"}
        out.reply(int(request.get("id", 0)), result)

    while line := await reader.readline():
        try:
            request = json.loads(line)
        except ValueError:
            log.warning("not a request: %r", line[:80])
            continue
        task = asyncio.create_task(one(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    out = PipePublisher(transport)
    stop = Stop()  # SIGTERM from here on stops this process gracefully
    first = await reader.readline()
    if not first:
        return 0
    config = json.loads(first)
    prefix = str(config.get("session_prefix", ""))

    def sink(event: Event) -> None:
        out.publish(event_fields(event, prefix))

    accounts = Accounts(dict(config["passwords"]), frozenset(config["domains"]))
    lab = LabWorld(
        Path(config["data_dir"]),
        LabTLS.existing(Path(config["tls_dir"])),
        accounts,
        sink,
        host=str(config["host"]),
        ports={k: int(v) for k, v in config["ports"].items()},
    )
    try:
        await lab.start()
    except PortInUse as exc:
        out.line({"error": str(exc)})
        return 2
    out.line({"ports": lab.ports})
    try:
        await stop.until(serve_requests(lab, out, reader))
    finally:
        # stdin closed (the web process stopped or died; this one must not outlive it)
        # or SIGTERM: a graceful stop that drains the relay stage (LabWorld.close).
        await lab.close()
    return 0


if __name__ == "__main__":
    run_main(main)

"""The sandbox's internal hops in a process of their own: `python -m app.lab.inner`.

The app's event loop runs the public listeners and the relaying MTA; this process runs
the receiving end of the relay hop (the MX listeners of both domains), the MDA behind
LMTP and the inbound queue that feeds it, so a second core does that work.

Over stdin/stdout (started and watched by `LabWorld`):

- stdin, first line, JSON: {"data_dir", "tls_dir", "passwords", "domains",
  "session_prefix", "lmtp_socket"} (on stdin rather than the command line, where `ps` would show the
  passwords); then "wake" lines whenever the app queued inbound mail. EOF means the
  app is gone (SIGTERM alike, app/lab/shutdown.py): deliveries in flight finish up to
  their queue clean-up, then this process exits.
- stdout, first line, JSON: {"ports": {"mx-b": port, "mx-a": port}} (the MDA listens on
  the Unix socket "lmtp_socket", in a private directory the app owns);
  then frames of events and deliveries (app/lab/channel.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from app.engines.base import EngineContext, close_server
from app.engines.relay import ClientPool, deliver_lmtp
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy
from app.engines.tls import LabTLS
from app.events import Event
from app.lab.channel import PipePublisher, event_fields
from app.lab.child import run_main
from app.lab.queue_owner import run_owned
from app.lab.shutdown import Stop
from app.lab.stages import Stage, settle
from app.sandbox import endpoint_for, start_listener
from app.topology import HOST_A, HOST_B, LAB_INTERNAL
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import QueuedMail, Spool

log = logging.getLogger("mailflow.lab.inner")
LOOPBACK = "127.0.0.1"


class Inner:
    def __init__(self, config: dict[str, Any], out: PipePublisher) -> None:
        data_dir = Path(config["data_dir"])
        self.out = out
        self.prefix = str(config.get("session_prefix", "in-"))
        self.accounts = Accounts(
            dict(config["passwords"]), frozenset(config.get("domains", Accounts().domains))
        )
        self.store = MailStore(data_dir / "mail")
        self.inbound = {
            HOST_A: Spool(data_dir / "queue" / "inbound-a"),
            HOST_B: Spool(data_dir / "queue" / "inbound-b"),
        }
        self.ctx = EngineContext(
            self.store, self.accounts, LabTLS.existing(Path(config["tls_dir"])), self.sink
        )
        self.stage = Stage(ClientPool())
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._worker: asyncio.Task[None] | None = None
        self.lmtp_socket = str(config["lmtp_socket"])

    def sink(self, e: Event) -> None:
        # Session ids are counted per process; the prefix keeps them apart from the app's.
        self.out.publish(event_fields(e, self.prefix))

    def delivered(self, rcpt: str) -> None:
        self.out.delivered(rcpt)

    def wake(self) -> None:
        """Mail may wait that this process did not queue itself (the app's port 25, a
        previous run): list the inbound queues."""
        self.stage.rescan()

    async def start(self) -> None:
        for listener in LAB_INTERNAL:
            endpoint = endpoint_for(listener)
            if listener.role == "delivery":
                policy: object = DeliveryPolicy(
                    self.accounts, self.store, listener.hostname, self.delivered, pipelining=True
                )
                # The MTA hands mail to the MDA over a Unix socket, as Postfix does to
                # Dovecot's LMTP: cheaper than loopback TCP, and nobody else can reach it.
                # A socket left by a previous run of this process (killed) is replaced.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lmtp_socket)
                server = await start_listener(
                    self.ctx, listener, endpoint, policy, path=self.lmtp_socket
                )
            else:
                spool = self.inbound[listener.hostname]
                policy = InboundPolicy(
                    self.accounts,
                    {listener.domain},
                    spool,
                    listener.hostname,
                    lambda e, s=spool: self.stage.offer(s, e),
                    pipelining=True,
                )
                server = await start_listener(self.ctx, listener, endpoint, policy, host=LOOPBACK)
                self.ports[listener.name] = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    async def flush_inbound(self) -> None:
        async def one(entry: QueuedMail, host: str, spool: Spool) -> None:
            async with self.stage.slot():
                result = await deliver_lmtp(
                    self.ctx,
                    LOOPBACK,
                    24,
                    entry,
                    lhlo=host,
                    pool=self.stage.pool,
                    socket_path=self.lmtp_socket,
                )
            await settle(spool, entry, result)

        for host, spool in self.inbound.items():
            await self.stage.each(spool, lambda e, h=host, s=spool: one(e, h, s))

    def run_queue(self) -> None:
        """Start delivering the inbound queues."""
        # Delivery waits until an internal process still shutting down has let go of the
        # inbound queues (one lock for both: one stage works them).
        owner = self.inbound[HOST_B].dir / ".owner"
        self._worker = asyncio.create_task(
            run_owned(owner, lambda: self.stage.run(self.flush_inbound)), name="lab-inbound"
        )
        self.wake()  # mail left in the inbound queues by a previous run goes out now

    async def close(self) -> None:
        if self._worker is not None:
            # Deliveries in flight finish up to their queue clean-up (bounded) while the
            # MDA still listens: an entry the MDA answered 250 for is not delivered again.
            await self.stage.drain(self._worker)
            self._worker = None
        await self.stage.pool.expire(everything=True)
        for server in self._servers:
            await close_server(server)


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
    inner = Inner(json.loads(first), out)
    await inner.start()
    out.line({"ports": inner.ports})
    inner.run_queue()

    async def read() -> None:
        while line := await reader.readline():
            if line.strip() == b"wake":
                inner.wake()

    try:
        await stop.until(read())
    finally:
        # stdin closed (the app stopped or died, and this process must not outlive it)
        # or SIGTERM: a graceful stop that drains the inbound stage.
        await inner.close()
    return 0


if __name__ == "__main__":
    run_main(main)

"""The lab world: the same engines as the scenarios, persistent and on fixed ports.

Public listeners (what a learner's own client connects to) sit on the standard port
plus an offset. The hops inside the sandbox (relay to an MX, LMTP to the MDA) use
internal listeners on ephemeral loopback ports (and the MDA on a Unix socket), so the
live view can tell "your client" from the sandbox's own servers by the listener alone.
Those hops and the inbound queue (app/lab/inner.py) run on the same loop, into the
same sink.

`python -m app` runs this in the lab process (app/lab/process.py), never in the web;
tests may run it in their own event loop with any sink. Its listeners are described in
app/topology.py and started by app/sandbox.py's builder, like the scenario world's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.imap_server import notify_mailbox_changed
from app.engines.relay import ClientPool, relay
from app.engines.smtp_policies import InboundPolicy, SubmissionPolicy
from app.engines.tls import LabTLS
from app.events import Sink
from app.lab.inner import InnerHops
from app.lab.queue_owner import run_owned
from app.lab.stages import Stage, settle
from app.sandbox import endpoint_for, start_listener
from app.topology import (
    HOST_A,
    HOST_B,
    LAB_CLIENT,
    LAB_PUBLIC,
    Listener,
    PortInUse,
    lab_ports,
)
from app.world.accounts import Accounts
from app.world.dns import SimulatedDNS
from app.world.mailstore import MailStore
from app.world.network import LabNetwork
from app.world.spool import QueuedMail, Spool

log = logging.getLogger("mailflow.lab")
LOOPBACK = "127.0.0.1"
CLIENT = LAB_CLIENT
OWNER_FILE = ".owner"  # the lock file of the queues (app/lab/queue_owner.py)


# The public listeners are described in app/topology.py with every other listener.
SERVICES = LAB_PUBLIC
__all__ = ["SERVICES", "LabWorld", "PortInUse", "lab_ports"]




class LabWorld:
    def __init__(
        self,
        data_dir: Path,
        tls: LabTLS,
        accounts: Accounts,
        sink: Sink,
        *,
        host: str = LOOPBACK,
        ports: dict[str, int] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.dir = Path(data_dir)
        self.host = host
        self.wanted_ports = ports if ports is not None else lab_ports(2000)
        self.ports: dict[str, int] = {}
        self.accounts = accounts
        self.tls = tls
        self.sink = sink
        self.store = MailStore(self.dir / "mail")
        for user in accounts.users:
            self.store.ensure_account(user)
        self.outbound = Spool(self.dir / "queue" / "outbound")
        self.inbound = {
            HOST_A: Spool(self.dir / "queue" / "inbound-a"),
            HOST_B: Spool(self.dir / "queue" / "inbound-b"),
        }
        self.dns = SimulatedDNS.load()
        self.network = LabNetwork()
        self.ctx = EngineContext(self.store, accounts, tls, sink)
        self.endpoints: dict[str, Endpoint] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._relay = Stage(ClientPool())  # sessions to the MX, reused while busy
        self._socket_dir: str | None = None
        self.hops = InnerHops(self.ctx, self.inbound, self._lmtp_socket(), self._delivered)
        self._worker: asyncio.Task[None] | None = None
        self._stages: tuple[asyncio.Task[None], asyncio.Task[None]] | None = None
        self.idle_timeout = idle_timeout  # overrides every service's timeout (tests)

    # -- policies -----------------------------------------------------------
    def _policy(self, service: Listener) -> object | None:
        if service.role == "submission":
            return SubmissionPolicy(
                self.accounts, self.outbound, HOST_A, lambda e: self._relay.offer(self.outbound, e)
            )
        if service.role == "inbound":
            spool = self.inbound[HOST_B]
            return InboundPolicy(
                self.accounts,
                {"b.example"},
                spool,
                HOST_B,
                lambda e: self.hops.stage.offer(spool, e),
            )
        return None

    def _delivered(self, rcpt: str) -> None:
        # IMAP IDLE sessions on this loop hear of the new mail at once.
        notify_mailbox_changed(self.store.account_path(rcpt))

    # -- life cycle ---------------------------------------------------------
    async def start(self) -> None:
        try:
            # Public ports first: the internal hops' ephemeral ports must not take one.
            for service in SERVICES:
                await self._start_public(service)
            await self.hops.start()
        except BaseException:
            await self.close()
            raise
        for host, name in ((HOST_B, "mx-b"), (HOST_A, "mx-a")):
            for record in self.dns.query(host, "A"):
                self.network.attach(record.value, 25, (LOOPBACK, self.hops.ports[name]))
        # Delivering waits until a lab process still shutting down has let go of the queues.
        self._worker = asyncio.create_task(
            run_owned(self.dir / "queue" / OWNER_FILE, self._run_stages), name="lab-queue"
        )
        self.wake()  # mail left in the queues by a previous run goes out now

    async def _run_stages(self) -> None:
        """Both stages, once this process owns the queues: relaying and local delivery
        overlap, as an MTA's queue manager runs both at once."""
        self._stages = (
            asyncio.create_task(self._relay.run(self.flush_outbound), name="lab-relay"),
            asyncio.create_task(
                self.hops.stage.run(self.hops.flush_inbound), name="lab-inbound"
            ),
        )
        # Held (and the queue lock with it) until both have ended, even when a drain
        # cancelled one of them.
        for outcome in await asyncio.gather(*self._stages, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("a lab queue stage stopped", exc_info=outcome)

    def _lmtp_socket(self) -> str:
        """Where the MDA listens: a private directory in the data dir, kept across
        restarts; a temporary one if that path is too long for a Unix socket (107 bytes)."""
        path = self.dir / "run" / "lmtp"
        if len(os.fsencode(path.resolve())) < 100:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return str(path.resolve())
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="mailflow-mda-")
        return os.path.join(self._socket_dir, "lmtp")

    async def _start_public(self, service: Listener) -> None:
        port = self.wanted_ports[service.name]
        endpoint = endpoint_for(service, self.idle_timeout)
        try:
            server = await start_listener(
                self.ctx, service, endpoint, self._policy(service), host=self.host, port=port
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "is already in use" if exc.errno == errno.EADDRINUSE else "needs root"
                raise PortInUse(
                    f"lab port {port} ({service.name}, standard port {service.standard_port}) "
                    f"{why}: set MAILFLOW_LAB_OFFSET to another offset, or MAILFLOW_LAB=0 "
                    "to run without the lab listeners"
                ) from None
            raise
        self._servers.append(server)
        self.endpoints[service.name] = endpoint
        self.ports[service.name] = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self._servers:
            # The ports first: a new lab process (after the web restarted) may want them.
            server.close()
        if self._worker is not None:
            if self._stages is not None:
                # Deliveries in flight finish up to their queue clean-up (bounded): the
                # relays first, while their next hops (MX, MDA) still listen, then the
                # inbound stage, while the MDA still listens.
                relay, inbound = self._stages
                await self._relay.drain(relay)
                await self.hops.stage.drain(inbound)
                self._stages = None
            self._worker.cancel()  # done by now, or still waiting for the queue lock
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._relay.pool.expire(everything=True)
        for server in self._servers:
            await close_server(server)
        self._servers.clear()
        await self.hops.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # -- the queue ----------------------------------------------------------
    def wake(self) -> None:
        """List the queues now (mail a previous run left)."""
        self._relay.rescan()
        self.hops.stage.rescan()

    async def flush_outbound(self) -> None:
        async def one(entry: QueuedMail) -> None:
            async with self._relay.slot():
                result = await relay(
                    self.ctx, self.dns, self.network, entry, helo=HOST_A, pool=self._relay.pool
                )
            await settle(self.outbound, entry, result)

        await self._relay.each(self.outbound, one)

    # -- reset --------------------------------------------------------------
    def reset_mailboxes(self) -> int:
        """Empty every folder of every account; UIDs keep counting up (RFC 3501 §2.3.1.1)."""
        removed = 0
        for user in self.accounts.users:
            for name in self.store.folder_names(user):
                folder = self.store.folder(user, name)
                keys = [m.key for m in folder.messages()]
                removed += len(folder.remove(keys))
                notify_mailbox_changed(folder.path)
        for spool in (self.outbound, *self.inbound.values()):
            for entry in spool.entries():
                spool.remove(entry.qid)
        return removed

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

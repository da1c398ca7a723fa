"""The lab world: the same engines as the scenarios, persistent and on fixed ports.

Public listeners (what a learner's own client connects to) sit on the standard port
plus an offset. The hops inside the sandbox (relay to an MX, LMTP to the MDA) use
internal listeners on ephemeral loopback ports, so the live view can tell "your
client" from the sandbox's own servers by the listener alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.imap_server import notify_mailbox_changed, start_imap_server
from app.engines.pop3_server import start_pop3_server
from app.engines.relay import ClientPool, deliver_lmtp, relay
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import PANEL_DELIVER, PANEL_FETCH, PANEL_RELAY, PANEL_SUBMIT, Sink
from app.world.accounts import Accounts
from app.world.dns import SimulatedDNS
from app.world.mailstore import MailStore
from app.world.network import LabNetwork
from app.world.spool import QueuedMail, Spool

log = logging.getLogger("mailflow.lab")
LOOPBACK = "127.0.0.1"
HOST_A, HOST_B = "mail.a.example", "mx.b.example"
CLIENT = "lab-client"
RETRY_SECONDS = 30.0
PARALLEL_DELIVERIES = 16


@dataclass(frozen=True)
class Service:
    name: str
    standard_port: int
    protocol: str
    panel: int
    server_actor: str
    hostname: str
    implicit_tls: bool = False
    idle_timeout: float = 300.0


# RFC 1939 §3 asks for at least 10 minutes of POP3 idle time, RFC 3501 §5.4 30 for IMAP.
SERVICES = (
    Service("smtp", 25, "SMTP", PANEL_RELAY, "mta-b", HOST_B),
    Service("submission", 587, "SMTP", PANEL_SUBMIT, "msa-a", HOST_A),
    Service("submissions", 465, "SMTP", PANEL_SUBMIT, "msa-a", HOST_A, implicit_tls=True),
    Service("pop3", 110, "POP3", PANEL_FETCH, "pop3-b", HOST_B, idle_timeout=600.0),
    Service("pop3s", 995, "POP3", PANEL_FETCH, "pop3-b", HOST_B, True, 600.0),
    Service("imap", 143, "IMAP", PANEL_FETCH, "imap-b", HOST_B, idle_timeout=1800.0),
    Service("imaps", 993, "IMAP", PANEL_FETCH, "imap-b", HOST_B, True, 1800.0),
)


class PortInUse(RuntimeError):
    """A lab port is taken; the message names it and the setting to change."""


def lab_ports(offset: int) -> dict[str, int]:
    return {s.name: s.standard_port + offset for s in SERVICES}


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
        self._wake = asyncio.Event()
        self._wake_local = asyncio.Event()
        # Each stage has its own slots, so a backlog of relays never starves delivery.
        self._relay_slots = asyncio.Semaphore(PARALLEL_DELIVERIES)
        self._local_slots = asyncio.Semaphore(PARALLEL_DELIVERIES)
        self._in_flight: set[str] = set()
        self._pool = ClientPool()  # sessions to the MX and the MDA, reused while busy
        self._worker: asyncio.Task[None] | None = None
        self.internal_ports: dict[str, int] = {}
        self.idle_timeout = idle_timeout  # overrides every service's timeout (tests)

    # -- policies -----------------------------------------------------------
    def _policy(self, service: Service) -> object | None:
        if service.name in ("submission", "submissions"):
            return SubmissionPolicy(self.accounts, self.outbound, HOST_A, self.wake)
        if service.name == "smtp":
            return InboundPolicy(
                self.accounts, {"b.example"}, self.inbound[HOST_B], HOST_B, self.wake
            )
        return None

    def _delivered(self, rcpt: str) -> None:
        notify_mailbox_changed(self.store.account_path(rcpt))

    # -- life cycle ---------------------------------------------------------
    async def start(self) -> None:
        await self._start_internal()
        try:
            for service in SERVICES:
                await self._start_public(service)
        except BaseException:
            await self.close()
            raise
        self._worker = asyncio.create_task(self._work(), name="lab-queue")
        self.wake()  # mail left in the queues by a previous run goes out now

    async def _start_internal(self) -> None:
        ctx = self.ctx
        internal = {
            "mx-b": (
                Endpoint(PANEL_RELAY, "SMTP", 25, "mta-b", "mta-a", HOST_B),
                InboundPolicy(
                    self.accounts, {"b.example"}, self.inbound[HOST_B], HOST_B, self.wake
                ),
                False,
            ),
            "mx-a": (
                Endpoint(PANEL_RELAY, "SMTP", 25, "mta-a-in", "mta-a", HOST_A),
                InboundPolicy(
                    self.accounts, {"a.example"}, self.inbound[HOST_A], HOST_A, self.wake
                ),
                False,
            ),
            "lmtp": (
                Endpoint(PANEL_DELIVER, "LMTP", 24, "mda-b", "mta-b", "mda.lab.example"),
                DeliveryPolicy(self.accounts, self.store, "mda.lab.example", self._delivered),
                True,
            ),
        }
        for name, (endpoint, policy, lmtp) in internal.items():
            server = await start_smtp_server(ctx, endpoint, policy, host=LOOPBACK, lmtp=lmtp)
            self._servers.append(server)
            self.endpoints[name] = endpoint
            self.internal_ports[name] = server.sockets[0].getsockname()[1]
        for host, name in ((HOST_B, "mx-b"), (HOST_A, "mx-a")):
            for record in self.dns.query(host, "A"):
                self.network.attach(record.value, 25, (LOOPBACK, self.internal_ports[name]))

    async def _start_public(self, service: Service) -> None:
        port = self.wanted_ports[service.name]
        endpoint = Endpoint(
            service.panel,
            service.protocol,
            service.standard_port,
            service.server_actor,
            CLIENT,
            service.hostname,
            implicit_tls=service.implicit_tls,
            idle_timeout=self.idle_timeout or service.idle_timeout,
        )
        try:
            if service.protocol == "SMTP":
                server = await start_smtp_server(
                    self.ctx,
                    endpoint,
                    self._policy(service),
                    host=self.host,
                    port=port,
                    require_auth=service.name != "smtp",
                )
            elif service.protocol == "POP3":
                server = await start_pop3_server(self.ctx, endpoint, host=self.host, port=port)
            else:
                server = await start_imap_server(self.ctx, endpoint, host=self.host, port=port)
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
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._pool.expire(everything=True)
        for server in self._servers:
            await close_server(server)
        self._servers.clear()

    # -- the queue ----------------------------------------------------------
    # Two stages, each its own worker, so relaying and local delivery overlap; within a
    # stage several mails are in flight at once, as an MTA runs parallel deliveries.
    def wake(self) -> None:
        self._wake.set()
        self._wake_local.set()

    async def _work(self) -> None:
        await asyncio.gather(
            self._stage(self._wake, self.flush_outbound),
            self._stage(self._wake_local, self.flush_inbound),
        )

    async def _stage(self, wake: asyncio.Event, flush: Callable[[], Awaitable[None]]) -> None:
        while True:
            # While sessions are cached, wake often enough to QUIT the idle ones.
            wait = self._pool.idle_seconds if len(self._pool) else RETRY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
            wake.clear()
            try:
                await flush()
                await self._pool.expire()
            except Exception:  # a bad entry must not stop the queue for everyone
                log.exception("lab queue run failed")

    async def flush(self) -> None:
        """Relay everything queued, then deliver everything accepted (RFC 5321 §4.5.4)."""
        await self.flush_outbound()
        await self.flush_inbound()

    async def flush_outbound(self) -> None:
        async def one(entry: QueuedMail) -> None:
            async with self._relay_slots:
                result = await relay(
                    self.ctx, self.dns, self.network, entry, helo=HOST_A, pool=self._pool
                )
            if not result.deferred:
                self.outbound.remove(entry.qid)

        await self._each(self.outbound, one)

    async def flush_inbound(self) -> None:
        async def one(entry: QueuedMail, host: str, spool: Spool) -> None:
            async with self._local_slots:
                result = await deliver_lmtp(
                    self.ctx,
                    LOOPBACK,
                    self.internal_ports["lmtp"],
                    entry,
                    lhlo=host,
                    pool=self._pool,
                )
            if result.delivered or result.refused:
                spool.remove(entry.qid)

        for host, spool in self.inbound.items():
            await self._each(spool, lambda e, h=host, s=spool: one(e, h, s))

    async def _each(self, spool: Spool, job: Callable[[QueuedMail], Awaitable[None]]) -> None:
        # Entries taken by a run still in flight are skipped, not sent twice.
        # Only names are listed; mails already in flight are not even read again.
        fresh = [qid for qid in spool.qids() if qid not in self._in_flight]
        entries = [m for m in map(spool.get, fresh) if m is not None]
        self._in_flight.update(e.qid for e in entries)
        try:
            results = await asyncio.gather(*(job(e) for e in entries), return_exceptions=True)
        finally:
            self._in_flight.difference_update(e.qid for e in entries)
        for entry, outcome in zip(entries, results, strict=True):
            if isinstance(outcome, Exception):
                log.warning("queue entry %s stays queued: %s", entry.qid, outcome)

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

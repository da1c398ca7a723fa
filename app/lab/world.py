"""The lab world: the same engines as the scenarios, persistent and on fixed ports.

Public listeners (what a learner's own client connects to) sit on the standard port
plus an offset. The hops inside the sandbox (relay to an MX, LMTP to the MDA) use
internal listeners on ephemeral loopback ports, so the live view can tell "your
client" from the sandbox's own servers by the listener alone. Those listeners and
the inbound queue run in a child process (app/lab/inner.py) so they use a second
core; its events come back over a pipe into the same sink.

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
from collections.abc import Callable
from pathlib import Path

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.imap_server import notify_mailbox_changed
from app.engines.relay import ClientPool, relay
from app.engines.smtp_policies import InboundPolicy, SubmissionPolicy
from app.engines.tls import LabTLS
from app.events import Event, Sink
from app.lab.channel import EventFields, subscribe
from app.lab.child import configure, shared_config, spawn
from app.lab.queue_owner import run_owned
from app.lab.restarts import Restarts
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
INNER_START_SECONDS = 30.0
OWNER_FILE = ".owner"  # the lock file of a queue directory (app/lab/queue_owner.py)


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
        session_prefix: str = "",
        forward: Callable[[list[EventFields]], None] | None = None,
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
        self._worker: asyncio.Task[None] | None = None
        self.internal_ports: dict[str, int] = {}
        self.idle_timeout = idle_timeout  # overrides every service's timeout (tests)
        self._inner: asyncio.subprocess.Process | None = None
        self._inner_reader: asyncio.Task[None] | None = None
        self._restarter: asyncio.Task[None] | None = None
        self._inner_runs = 0
        self._restarts = Restarts("the lab's internal process")
        self._closing = False
        self._socket_dir: str | None = None
        self.session_prefix = session_prefix  # keeps session ids of restarted processes apart
        # Where the inner process's events go as they came (tuples, session ids already
        # prefixed), when this world runs in the lab process under the web; else each
        # becomes an Event for `sink` (tests, in-process).
        self.forward = forward

    # -- policies -----------------------------------------------------------
    def _policy(self, service: Listener) -> object | None:
        if service.role == "submission":
            return SubmissionPolicy(
                self.accounts, self.outbound, HOST_A, lambda e: self._relay.offer(self.outbound, e)
            )
        if service.role == "inbound":
            return InboundPolicy(
                self.accounts,
                {"b.example"},
                self.inbound[HOST_B],
                HOST_B,
                lambda _entry: self.wake_inner(),
            )
        return None

    # -- life cycle ---------------------------------------------------------
    async def start(self) -> None:
        self._closing = False
        try:
            # Public ports first: the child's ephemeral ports must not take one of them.
            for service in SERVICES:
                await self._start_public(service)
            await self._start_inner()
        except BaseException:
            await self.close()
            raise
        # Relaying waits until a lab process still shutting down has let go of the queue.
        self._worker = asyncio.create_task(
            run_owned(self.outbound.dir / OWNER_FILE, lambda: self._relay.run(self.flush_outbound)),
            name="lab-queue",
        )
        self.wake()  # mail left in the queues by a previous run goes out now

    @property
    def inner_pid(self) -> int | None:
        return self._inner.pid if self._inner is not None else None

    async def _start_inner(self) -> None:
        """Start the internal process, learn its ports, route the MX hosts to them."""
        self._inner_runs += 1
        proc = await spawn("app.lab.inner")
        config = {
            **shared_config(self.dir, self.tls.directory, self.accounts),
            "session_prefix": f"{self.session_prefix}in{self._inner_runs}-",
            "lmtp_socket": self._lmtp_socket(),
        }
        ports = (await configure(proc, config, INNER_START_SECONDS)).get("ports")
        if not ports:
            await proc.wait()
            raise RuntimeError(f"the lab's internal process exited ({proc.returncode})")
        self._inner = proc
        self._restarts.mark_started()
        self.internal_ports = {name: int(port) for name, port in ports.items()}
        for host, name in ((HOST_B, "mx-b"), (HOST_A, "mx-a")):
            for record in self.dns.query(host, "A"):
                self.network.attach(record.value, 25, (LOOPBACK, self.internal_ports[name]))
        self._inner_reader = asyncio.create_task(self._read_inner(proc), name="lab-inner")

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

    async def _read_inner(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for events, deliveries, _replies in subscribe(proc.stdout):
            self._from_inner(events, deliveries)
        if not self._closing:
            self._restarter = asyncio.create_task(self._restart_inner(proc), name="lab-restart")

    def _from_inner(self, events: list[EventFields], deliveries: list[str]) -> None:
        if self.forward is not None:
            # Passed on untouched: no Event and no tuple rebuilt per event (~20 a mail).
            self.forward(events)
            events = []
        for fields in events:
            try:
                self.sink(Event(*fields))
            except Exception:  # one bad event must not stop the ones that follow
                log.exception("bad event from the lab's internal process")
        for rcpt in deliveries:
            # IMAP IDLE sessions live in this process: tell them at once.
            notify_mailbox_changed(self.store.account_path(rcpt))

    async def _restart_inner(self, dead: asyncio.subprocess.Process) -> None:
        restarted = await self._restarts.after(
            dead, self._start_inner, self._stop_inner, lambda: self._closing
        )
        if restarted:
            self._relay.rescan()  # relays deferred while it was down go out now

    async def _stop_inner(self) -> None:
        proc, self._inner = self._inner, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # EOF: the child finishes and exits
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._inner_reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._inner_reader
            self._inner_reader = None

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
        self._closing = True
        for server in self._servers:
            # The ports first: a new lab process (after the web restarted) may want them.
            server.close()
        if self._worker is not None:
            # Relays in flight finish up to their queue clean-up (bounded) while the
            # inner process, their next hop, still runs; it stops only after this.
            await self._relay.drain(self._worker)
            self._worker = None
        await self._relay.pool.expire(everything=True)
        for server in self._servers:
            await close_server(server)
        self._servers.clear()
        if self._restarter is not None:
            self._restarter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarter
            self._restarter = None
        await self._stop_inner()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # -- the queue ----------------------------------------------------------
    # Two stages, so relaying and local delivery overlap: relaying here, delivery over
    # LMTP in the internal process.
    def wake(self) -> None:
        self._relay.rescan()
        self.wake_inner()

    def wake_inner(self) -> None:
        """Mail waits in an inbound queue: the internal process delivers it now."""
        proc = self._inner
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(b"wake\n")

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

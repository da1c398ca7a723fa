"""One isolated mail world: two domains, their servers, mailboxes, DNS and queues.

Each scenario run builds a fresh World in its own directory, starts every
listener on an ephemeral loopback port, and tears it all down afterwards, so two
learners never share a mailbox and two app instances never share a port.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import PANEL_DELIVER, PANEL_FETCH, PANEL_RELAY, PANEL_SUBMIT, Sink
from app.world.accounts import Accounts
from app.world.dns import SimulatedDNS
from app.world.mailstore import MailStore
from app.world.network import LabNetwork
from app.world.spool import Spool

HOST_A = "mail.a.example"
HOST_B = "mx.b.example"
LOOPBACK = "127.0.0.1"


def default_endpoints() -> dict[str, Endpoint]:
    """The actors of the four panels, and the standard port each listener plays."""
    return {
        "submission": Endpoint(PANEL_SUBMIT, "SMTP", 587, "msa-a", "mua-alice", HOST_A),
        "mx-b": Endpoint(PANEL_RELAY, "SMTP", 25, "mta-b", "mta-a", HOST_B),
        "lmtp-b": Endpoint(PANEL_DELIVER, "LMTP", 24, "mda-b", "mta-b", "mda.b.example"),
        "pop3-b": Endpoint(PANEL_FETCH, "POP3", 110, "pop3-b", "mua-bob", HOST_B),
        "imap-b": Endpoint(PANEL_FETCH, "IMAP", 143, "imap-b", "mua-bob", HOST_B),
    }


@dataclass
class World:
    root: Path
    tls: LabTLS
    sink: Sink
    accounts: Accounts = field(default_factory=Accounts)
    dns: SimulatedDNS = field(default_factory=SimulatedDNS.load)
    network: LabNetwork = field(default_factory=LabNetwork)
    endpoints: dict[str, Endpoint] = field(default_factory=default_endpoints)
    ports: dict[str, int] = field(default_factory=dict)
    _servers: list[asyncio.AbstractServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.store = MailStore(self.root / "mail")
        for user in self.accounts.users:
            self.store.ensure_account(user)
        self.outbound = Spool(self.root / "queue" / HOST_A)
        self.inbound = Spool(self.root / "queue" / HOST_B)
        self.ctx = EngineContext(self.store, self.accounts, self.tls, self.sink)

    async def start(self) -> None:
        from app.engines.imap_server import notify_mailbox_changed, start_imap_server
        from app.engines.pop3_server import start_pop3_server

        ctx, ep = self.ctx, self.endpoints

        def delivered(rcpt: str) -> None:
            notify_mailbox_changed(self.store.account_path(rcpt))

        servers = {
            "submission": start_smtp_server(
                ctx,
                ep["submission"],
                SubmissionPolicy(self.accounts, self.outbound, HOST_A),
                host=LOOPBACK,
                require_auth=True,
            ),
            "mx-b": start_smtp_server(
                ctx,
                ep["mx-b"],
                InboundPolicy(self.accounts, {"b.example"}, self.inbound, HOST_B),
                host=LOOPBACK,
            ),
            "lmtp-b": start_smtp_server(
                ctx,
                ep["lmtp-b"],
                DeliveryPolicy(self.accounts, self.store, "mda.b.example", delivered),
                host=LOOPBACK,
                lmtp=True,
            ),
            "pop3-b": start_pop3_server(ctx, ep["pop3-b"], host=LOOPBACK),
            "imap-b": start_imap_server(ctx, ep["imap-b"], host=LOOPBACK),
        }
        for name, coro in servers.items():
            server = await coro
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        # The relaying MTA reaches mx.b.example only through the lab network.
        mx_b = self.dns.query(HOST_B, "A")[0].value
        self.network.attach(mx_b, 25, (LOOPBACK, self.ports["mx-b"]))

    async def close(self) -> None:
        for server in self._servers:
            await close_server(server)
        self._servers.clear()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

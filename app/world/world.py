"""One isolated mail world: two domains, their servers, mailboxes, DNS and queues.

Each scenario run builds a fresh World in its own directory, starts every
listener on an ephemeral loopback port, and tears it all down afterwards, so two
learners never share a mailbox and two app instances never share a port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.engines.tls import LabTLS
from app.events import PANEL_DELIVER, PANEL_FETCH, PANEL_RELAY, PANEL_SUBMIT, Sink
from app.world.accounts import Accounts
from app.world.dns import SimulatedDNS
from app.world.firewall import Firewall
from app.world.mailstore import MailStore
from app.world.network import HOME_NETWORK, LabNetwork
from app.world.pop_before_smtp import PopBeforeSmtp
from app.world.send_hold import SendHold
from app.world.spool import Spool

HOST_A = "mail.a.example"
HOST_B = "mx.b.example"
HOST_B2 = "mx2.b.example"
LOOPBACK = "127.0.0.1"
DKIM_SELECTOR = "mf2025"
ISP_DYNAMIC_POOL = HOME_NETWORK  # alice's home ISP hands these out (RFC 5737 range)


def default_endpoints() -> dict[str, Endpoint]:
    """The actors of the four panels, and the standard port each listener plays."""
    return {
        "submission": Endpoint(PANEL_SUBMIT, "SMTP", 587, "msa-a", "mua-alice", HOST_A),
        "mx-b": Endpoint(PANEL_RELAY, "SMTP", 25, "mta-b", "mta-a", HOST_B),
        "lmtp-b": Endpoint(PANEL_DELIVER, "LMTP", 24, "mda-b", "mta-b", "mda.b.example"),
        "pop3-b": Endpoint(PANEL_FETCH, "POP3", 110, "pop3-b", "mua-bob", HOST_B),
        "imap-b": Endpoint(PANEL_FETCH, "IMAP", 143, "imap-b", "mua-bob", HOST_B),
    }


def extra_endpoints() -> dict[str, Endpoint]:
    """Listeners a scenario can ask for by name; none of them run by default."""
    return {
        # mail.a.example also receives on 25: bounces, strangers asking it to relay.
        "mx-a": Endpoint(PANEL_RELAY, "SMTP", 25, "mta-a", "host-x", HOST_A),
        "lmtp-a": Endpoint(PANEL_DELIVER, "LMTP", 24, "mda-a", "mta-a", "mda.a.example"),
        "pop3-a": Endpoint(PANEL_FETCH, "POP3", 110, "pop3-a", "mua-alice", HOST_A),
        "imap-a": Endpoint(PANEL_FETCH, "IMAP", 143, "imap-a", "mua-alice", HOST_A),
        # Implicit TLS (RFC 8314): encrypted from the first byte.
        "submissions": Endpoint(
            PANEL_SUBMIT, "SMTP", 465, "msa-a", "mua-alice", HOST_A, implicit_tls=True
        ),
        "pop3s-b": Endpoint(
            PANEL_FETCH, "POP3", 995, "pop3-b", "mua-bob", HOST_B, implicit_tls=True
        ),
        "imaps-b": Endpoint(
            PANEL_FETCH, "IMAP", 993, "imap-b", "mua-bob", HOST_B, implicit_tls=True
        ),
        # The backup MX (preference 20 in the zone).
        "mx2-b": Endpoint(PANEL_RELAY, "SMTP", 25, "mta-b2", "mta-a", HOST_B2),
    }


@dataclass(frozen=True)
class WorldOptions:
    """What a scenario sets up beyond the default world (its `[world]` table)."""

    listeners: frozenset[str] = frozenset()  # names from extra_endpoints()
    down: frozenset[str] = frozenset()  # hosts whose port 25 refuses connections
    firewall: bool = False  # alice's ISP blocks outbound port 25 (OP25B)
    dkim: bool = False  # the MSA of a.example signs with DKIM
    sender_auth: bool = False  # mx.b.example checks SPF, DKIM and DMARC
    pop_before_smtp: bool = False  # a POP3 login on mail.a.example opens relaying on 25
    cleartext_login: bool = False  # POP3/IMAP on the plain ports accept a password before TLS
    dnsbl: bool = False  # mx.b.example refuses clients listed under bl.example (RFC 5782)
    send_hold: int = 0  # seconds the MSA holds each mail before it may be relayed (送信保留)
    accounts: tuple[tuple[str, str], ...] = ()  # extra (address, password)

    @classmethod
    def from_table(cls, data: dict[str, Any]) -> WorldOptions:
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown [world] settings: {sorted(unknown)}")
        listeners = frozenset(data.get("listeners", ()))
        bad = listeners - set(extra_endpoints())
        if bad:
            raise ValueError(f"unknown listeners: {sorted(bad)}")
        return cls(
            listeners=listeners,
            down=frozenset(data.get("down", ())),
            firewall=bool(data.get("firewall", False)),
            dkim=bool(data.get("dkim", False)),
            sender_auth=bool(data.get("sender_auth", False)),
            pop_before_smtp=bool(data.get("pop_before_smtp", False)),
            cleartext_login=bool(data.get("cleartext_login", False)),
            dnsbl=bool(data.get("dnsbl", False)),
            send_hold=int(data.get("send_hold", 0)),
            accounts=tuple(sorted(dict(data.get("accounts", {})).items())),
        )


def _dead_port() -> int:
    """A loopback port nobody listens on: connecting to it is really refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


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
    options: WorldOptions = field(default_factory=WorldOptions)
    _servers: list[asyncio.AbstractServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for address, password in self.options.accounts:
            self.accounts.passwords[address.lower()] = password
        extras = extra_endpoints()
        for name in sorted(self.options.listeners):
            self.endpoints.setdefault(name, extras[name])
        self.store = MailStore(self.root / "mail")
        for user in self.accounts.users:
            self.store.ensure_account(user)
        self.outbound = Spool(self.root / "queue" / HOST_A)
        self.inbound = Spool(self.root / "queue" / HOST_B)
        self.inbound_a = Spool(self.root / "queue" / f"{HOST_A}-in")
        self.ctx = EngineContext(self.store, self.accounts, self.tls, self.sink)
        self.pop_before_smtp: PopBeforeSmtp | None = None
        self.send_hold: SendHold | None = None
        if self.options.send_hold:
            self.send_hold = SendHold(self.options.send_hold, self.sink)
        if self.options.firewall:
            self.network.firewall = Firewall(
                self.sink,
                dynamic_pool=[ipaddress.IPv4Network(ISP_DYNAMIC_POOL)],
                inside=[ipaddress.IPv4Network(ISP_DYNAMIC_POOL)],
            )

    def host_ip(self, host: str) -> str:
        """The simulated address of a lab host, from the simulated DNS."""
        return self.dns.query(host, "A")[0].value

    def source(self, simulated_ip: str) -> tuple[str, int]:
        """A local address for a client playing the host at `simulated_ip`."""
        return (self.network.bind_address(simulated_ip), 0)

    async def start(self) -> None:
        from app.engines.imap_server import notify_mailbox_changed, start_imap_server
        from app.engines.pop3_server import start_pop3_server

        ctx, ep = self.ctx, self.endpoints

        def delivered(rcpt: str) -> None:
            notify_mailbox_changed(self.store.account_path(rcpt))

        opts, net = self.options, self.network
        signer = None
        if opts.dkim:
            from app.engines.dkim_keys import DkimKey

            signer = DkimKey.load(self.tls.directory, "a.example", DKIM_SELECTOR)
            signer.publish(self.dns)
        sender_auth = None
        if opts.sender_auth:
            from app.engines.sender_auth import SenderAuth

            sender_auth = SenderAuth(self.dns, self.sink, authserv_id=HOST_B, actor="mta-b")
        dnsbl = None
        if opts.dnsbl:
            from app.engines.dnsbl import Dnsbl

            dnsbl = Dnsbl(self.dns, self.sink, actor="mta-b")
        if opts.pop_before_smtp:
            self.pop_before_smtp = PopBeforeSmtp(translate=net.simulated_peer)
        pbs = self.pop_before_smtp

        def submission_policy() -> SubmissionPolicy:
            return SubmissionPolicy(
                self.accounts,
                self.outbound,
                HOST_A,
                self.send_hold.queued if self.send_hold else None,
                signer=signer,
                network=net,
            )

        def mx_b_policy(host: str) -> InboundPolicy:
            return InboundPolicy(
                self.accounts,
                {"b.example"},
                self.inbound,
                host,
                network=net,
                sender_auth=sender_auth,
                dnsbl=dnsbl,
            )

        servers = {
            "submission": start_smtp_server(
                ctx, ep["submission"], submission_policy(), host=LOOPBACK, require_auth=True
            ),
            "mx-b": start_smtp_server(ctx, ep["mx-b"], mx_b_policy(HOST_B), host=LOOPBACK),
            "lmtp-b": start_smtp_server(
                ctx,
                ep["lmtp-b"],
                DeliveryPolicy(self.accounts, self.store, "mda.b.example", delivered),
                host=LOOPBACK,
                lmtp=True,
            ),
            "pop3-b": start_pop3_server(
                ctx, ep["pop3-b"], host=LOOPBACK, cleartext_login=opts.cleartext_login
            ),
            "imap-b": start_imap_server(
                ctx, ep["imap-b"], host=LOOPBACK, cleartext_login=opts.cleartext_login
            ),
        }
        extra = {
            "mx-a": lambda: start_smtp_server(
                ctx,
                ep["mx-a"],
                InboundPolicy(
                    self.accounts,
                    {"a.example"},
                    self.inbound_a,
                    HOST_A,
                    network=net,
                    relay_allowed=pbs.allowed if pbs else None,
                    outbound=self.outbound if pbs else None,
                ),
                host=LOOPBACK,
            ),
            "lmtp-a": lambda: start_smtp_server(
                ctx,
                ep["lmtp-a"],
                DeliveryPolicy(self.accounts, self.store, "mda.a.example", delivered),
                host=LOOPBACK,
                lmtp=True,
            ),
            "pop3-a": lambda: start_pop3_server(
                ctx,
                ep["pop3-a"],
                host=LOOPBACK,
                on_login=pbs.logged_in if pbs else None,
                cleartext_login=opts.cleartext_login,
            ),
            "imap-a": lambda: start_imap_server(
                ctx, ep["imap-a"], host=LOOPBACK, cleartext_login=opts.cleartext_login
            ),
            "submissions": lambda: start_smtp_server(
                ctx, ep["submissions"], submission_policy(), host=LOOPBACK, require_auth=True
            ),
            "pop3s-b": lambda: start_pop3_server(ctx, ep["pop3s-b"], host=LOOPBACK),
            "imaps-b": lambda: start_imap_server(ctx, ep["imaps-b"], host=LOOPBACK),
            "mx2-b": lambda: start_smtp_server(
                ctx, ep["mx2-b"], mx_b_policy(HOST_B2), host=LOOPBACK
            ),
        }
        for name in sorted(opts.listeners):
            servers[name] = extra[name]()
        for name, coro in servers.items():
            server = await coro
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        # Every client of the sandbox reaches a listener only through the lab network,
        # at the simulated address of its host and the standard port it plays.
        for name, endpoint in self.endpoints.items():
            answers = self.dns.query(endpoint.hostname, "A")
            if answers and name in self.ports:
                self.network.attach(answers[0].value, endpoint.port, (LOOPBACK, self.ports[name]))
        for host in opts.down:
            # A host that is down: its address answers, but nothing listens on 25.
            self.network.attach(self.host_ip(host), 25, (LOOPBACK, _dead_port()))

    def route(self, name: str, source: str | None = None, actor: str = "") -> tuple[str, int]:
        """The real (host, port) of listener `name`, asked of the lab network the way a
        client would reach it (through the firewall when `source` is set)."""
        endpoint = self.endpoints[name]
        return self.network.resolve(
            self.host_ip(endpoint.hostname), endpoint.port, source=source, actor=actor
        )

    async def close(self) -> None:
        for server in self._servers:
            await close_server(server)
        self._servers.clear()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

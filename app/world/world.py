"""One isolated mail world's state: two domains, their mailboxes, DNS, network and queues.

Each scenario run builds a fresh world in its own directory (with its listeners:
`app.sandbox.Sandbox`, which puts the engines on this state), and tears it all down
afterwards, so two learners never share a mailbox and two app instances never share a
port. This module holds state only and imports no engine (tests/test_import_graph.py).
"""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.events import Sink
from app.topology import HOST_A, HOST_B, HOST_B2, SCENARIO_EXTRA
from app.world.accounts import Accounts
from app.world.dns import SimulatedDNS
from app.world.firewall import Firewall
from app.world.mailstore import MailStore
from app.world.network import HOME_NETWORK, LabNetwork
from app.world.pop_before_smtp import PopBeforeSmtp
from app.world.send_hold import SendHold
from app.world.spool import Spool

__all__ = ["HOST_A", "HOST_B", "HOST_B2", "LOOPBACK", "World", "WorldOptions"]
LOOPBACK = "127.0.0.1"
ISP_DYNAMIC_POOL = HOME_NETWORK  # alice's home ISP hands these out (RFC 5737 range)
EXTRA_LISTENERS = frozenset(listener.name for listener in SCENARIO_EXTRA)


@dataclass(frozen=True)
class WorldOptions:
    """What a scenario sets up beyond the default world (its `[world]` table)."""

    listeners: frozenset[str] = frozenset()  # names from app.topology.SCENARIO_EXTRA
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
        bad = listeners - EXTRA_LISTENERS
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


@dataclass
class World:
    root: Path
    tls: Any  # the lab certificates (app.engines.tls.LabTLS), kept for the engines
    sink: Sink
    accounts: Accounts = field(default_factory=Accounts)
    dns: SimulatedDNS = field(default_factory=SimulatedDNS.load)
    network: LabNetwork = field(default_factory=LabNetwork)
    options: WorldOptions = field(default_factory=WorldOptions)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for address, password in self.options.accounts:
            self.accounts.passwords[address.lower()] = password
        self.store = MailStore(self.root / "mail")
        for user in self.accounts.users:
            self.store.ensure_account(user)
        self.outbound = Spool(self.root / "queue" / HOST_A)
        self.inbound = Spool(self.root / "queue" / HOST_B)
        self.inbound_a = Spool(self.root / "queue" / f"{HOST_A}-in")
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

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

"""An access provider's firewall: Outbound Port 25 Blocking (OP25B).

A home ISP refuses connections from its dynamic address pool to port 25 outside
its own network, so an infected PC cannot spray mail straight at other MX hosts;
587 (submission with SMTP-AUTH) stays open (RFC 5068 §3.1: providers must not
block it). The lab network asks this firewall before every routed connection, so
the refusal is the client's connection really failing, not a line on screen.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from app.events import PANEL_SUBMIT, Sink, Tap
from app.notes import note

FIREWALL_ACTOR = "isp-fw"


class FirewallRefused(ConnectionRefusedError):
    """The ISP's firewall dropped the connection attempt."""


@dataclass
class Firewall:
    sink: Sink
    dynamic_pool: list[ipaddress.IPv4Network]  # the ISP's dynamic (home) addresses
    inside: list[ipaddress.IPv4Network] = field(default_factory=list)  # the ISP's own network
    blocked_ports: frozenset[int] = frozenset({25})
    panel: int = PANEL_SUBMIT

    def check(self, source: str, address: str, port: int, actor: str = "") -> None:
        src = ipaddress.IPv4Address(source)
        dst = ipaddress.IPv4Address(address)
        dynamic = any(src in net for net in self.dynamic_pool)
        outside = not any(dst in net for net in self.inside)
        tap = Tap(self.sink, self.panel, actor or source, FIREWALL_ACTOR, "TCP", port)
        where = {"source": source, "address": address, "port": port}
        if dynamic and outside and port in self.blocked_ports:
            text, detail = note(("firewall.drop", where))
            tap.note(text, f"firewall.block.{port}", dst=actor or source, detail=detail)
            raise FirewallRefused(f"{address}:{port} refused by the ISP firewall (OP25B)")
        if dynamic:
            text, detail = note(("firewall.accept", where))
            tap.note(text, f"firewall.pass.{port}", detail=detail)

"""The lab network: which simulated (address, port) pairs reach which loopback listener.

This table is the only way an engine of the sandbox opens a connection, so mail for
a domain outside the lab has nowhere to go: nothing is ever sent off the machine.

Simulated client addresses are real too: a host at 198.51.100.23 binds its socket
to 127.51.100.23 (all of 127/8 is loopback), so a server sees a distinct peer and
translates it back with `simulated_peer` before judging it (SPF, relay rules).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.world.firewall import Firewall


# The home network of the sandbox's people: their ISP's dynamic pool (RFC 5737
# documentation range) and the one address Alice's PC gets there. Every MUA of a
# scenario connects from it, so a Received line or a relay rule always shows the same
# simulated address, never the loopback address the socket really used.
HOME_NETWORK = "198.51.100.0/24"
HOME_IP = "198.51.100.23"


class NotInLab(ConnectionRefusedError):
    """The address is not part of the sandbox; the connection is refused locally."""


@dataclass
class LabNetwork:
    routes: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    firewall: Firewall | None = None
    _peers: dict[str, str] = field(default_factory=dict)  # loopback ip -> simulated ip

    def attach(self, address: str, port: int, real: tuple[str, int]) -> None:
        self.routes[(address, port)] = real

    def detach(self, address: str, port: int) -> None:
        self.routes.pop((address, port), None)

    def resolve(
        self, address: str, port: int, source: str | None = None, actor: str = ""
    ) -> tuple[str, int]:
        """The real (host, port) behind a simulated one. A connection from `source`
        first passes the firewall, which may refuse it (raises `FirewallRefused`)."""
        if self.firewall is not None and source is not None:
            self.firewall.check(source, address, port, actor)
        try:
            return self.routes[(address, port)]
        except KeyError:
            raise NotInLab(f"{address}:{port} is not reachable inside the sandbox") from None

    def bind_address(self, simulated: str) -> str:
        """The loopback address a host with this simulated IPv4 address binds to."""
        octets = ipaddress.IPv4Address(simulated).packed
        real = f"127.{octets[1]}.{octets[2]}.{octets[3]}"
        self._peers[real] = simulated
        return real

    def simulated_peer(self, real: str) -> str:
        """Translate a peer address seen by a listener back to the simulated one."""
        return self._peers.get(real, real)

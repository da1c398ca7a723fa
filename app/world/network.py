"""The lab network: which simulated (address, port) pairs reach which loopback listener.

This table is the only way an engine of the sandbox opens a connection, so mail for
a domain outside the lab has nowhere to go: nothing is ever sent off the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class NotInLab(ConnectionRefusedError):
    """The address is not part of the sandbox; the connection is refused locally."""


@dataclass
class LabNetwork:
    routes: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)

    def attach(self, address: str, port: int, real: tuple[str, int]) -> None:
        self.routes[(address, port)] = real

    def detach(self, address: str, port: int) -> None:
        self.routes.pop((address, port), None)

    def resolve(self, address: str, port: int) -> tuple[str, int]:
        try:
            return self.routes[(address, port)]
        except KeyError:
            raise NotInLab(f"{address}:{port} is not reachable inside the sandbox") from None

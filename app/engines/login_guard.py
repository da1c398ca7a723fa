"""One rule against password guessing, shared by SMTP AUTH, POP3 and IMAP.

Each engine already ends a session after three failed logins (RFC 4954 §4 allows it
and asks for at least three tries). That alone costs an attacker nothing: a new
connection starts again at zero. So failures are also counted per client address,
across connections and protocols, and every failed login from an address that failed
recently is answered later: `BASE` seconds for the first, doubling each time, at most
`CAP`. The count decays (it halves every `HALF_LIFE` seconds without failures), so a
user who mistyped once is not punished for long, and a successful login does not reset
it (whoever guesses one account's password must not wipe the record for the others).

Memory is bounded: at most `MAX_ADDRESSES` addresses are kept, least recently
failed first out, so a flood of source addresses costs a fixed few hundred KiB.
IPv6 clients are counted per /64, the block one host usually has to itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from app.events import Tap

BASE = 0.25  # seconds before the answer to a first failure
CAP = 8.0  # the longest any answer is held
HALF_LIFE = 60.0  # seconds for the failure count to halve
MAX_ADDRESSES = 4096
BACKOFF_KEY = "login.backoff"


def address_key(address: str) -> str:
    """What the count is kept under: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address  # a Unix socket or an unknown peer: its own bucket
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class Backoff:
    """What one failed login costs: the wait before the answer, and why."""

    delay: float
    failures: float  # the address's recent failures, this one included (decayed)
    address: str

    @property
    def text(self) -> str:
        # The count decays, so it is shown with one decimal ("2.7 recent failures").
        return (
            f"login back-off: {self.failures:.1f} recent failed logins from {self.address}, "
            f"answer held {self.delay:.2f} s"
        )

    @property
    def detail(self) -> dict[str, str]:
        return {
            "address": self.address,
            "failures": f"{self.failures:.1f}",
            "delay": f"{self.delay:.2f}",
        }


@dataclass
class LoginGuard:
    """Failed-login counts per client address, shared by every listener of one process."""

    base: float = BASE
    cap: float = CAP
    half_life: float = HALF_LIFE
    max_addresses: int = MAX_ADDRESSES
    clock: Callable[[], float] = time.monotonic
    _counts: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def failures(self, address: str) -> float:
        """The decayed count of recent failures from `address`."""
        entry = self._counts.get(address_key(address))
        return 0.0 if entry is None else self._decayed(entry)

    def failed(self, address: str) -> Backoff:
        """Count one failed login from `address`; returns how long to hold the answer."""
        key = address_key(address)
        entry = self._counts.pop(key, None)
        count = (self._decayed(entry) if entry is not None else 0.0) + 1.0
        self._counts[key] = (count, self.clock())  # newest last: the LRU order
        while len(self._counts) > self.max_addresses:
            self._counts.popitem(last=False)
        delay = min(self.cap, self.base * 2.0 ** (count - 1.0))
        return Backoff(delay, count, key)

    async def hold(self, address: str, tap: Tap) -> Backoff:
        """Count the failure, tell the live view, then wait before the answer goes out."""
        backoff = self.failed(address)
        tap.note(backoff.text, BACKOFF_KEY, detail=backoff.detail)
        await asyncio.sleep(backoff.delay)
        return backoff

    def _decayed(self, entry: tuple[float, float]) -> float:
        count, stamp = entry
        return count * 0.5 ** (max(0.0, self.clock() - stamp) / self.half_life)

    def __len__(self) -> int:
        return len(self._counts)

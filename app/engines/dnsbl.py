"""The receiving MTA's DNS blocklist check (DNSBL, RFC 5782).

The MX turns the connecting IPv4 address around octet by octet, puts it under the
blocklist zone and asks for an A record (RFC 5782 §2.1): an answer in 127.0.0.0/8
means "listed", NXDOMAIN means "not listed". For a listed address it also asks for
the TXT record, whose text goes into the refusal, as Postfix's reject_rbl_client
does. Every question and answer is a DNS event asked of the simulated DNS.
"""

from __future__ import annotations

import ipaddress

from app.events import PANEL_RELAY, Sink, Tap
from app.world.dns import SimulatedDNS

DEFAULT_ZONE = "bl.example"


def query_name(ip: str, zone: str) -> str:
    """198.51.100.77 under bl.example is 77.100.51.198.bl.example (RFC 5782 §2.1)."""
    octets = str(ipaddress.IPv4Address(ip)).split(".")
    return ".".join(reversed(octets)) + "." + zone


def is_listed_answer(value: str) -> bool:
    """A DNSBL answers with an address in 127.0.0.0/8 (RFC 5782 §2.1, §5)."""
    try:
        return ipaddress.IPv4Address(value) in ipaddress.IPv4Network("127.0.0.0/8")
    except ValueError:
        return False


class Dnsbl:
    def __init__(
        self, dns: SimulatedDNS, sink: Sink, *, zone: str = DEFAULT_ZONE, actor: str
    ) -> None:
        self.dns = dns
        self.sink = sink
        self.zone = zone
        self.actor = actor

    def refusal(self, peer_ip: str) -> str | None:
        """The 554 5.7.1 reply for a listed client, or None for a clean one."""
        try:
            name = query_name(peer_ip, self.zone)
        except ValueError:
            return None  # not IPv4 (RFC 5782 §2.4 puts IPv6 in nibbles; the lab has none)
        tap = Tap(self.sink, PANEL_RELAY, self.actor, "dns", "DNS", 53)
        tap.client(f"{name}. IN A ?", "dnsbl.query")
        answers = [r for r in self.dns.query(name, "A") if is_listed_answer(r.value)]
        if not answers:
            tap.server(f"{name}. IN A: NXDOMAIN", "dnsbl.answer.clean")
            return None
        tap.server("\n".join(r.zone_line() for r in answers), "dnsbl.answer.listed")
        tap.client(f"{name}. IN TXT ?", "dnsbl.query.txt")
        texts = self.dns.query(name, "TXT")
        if texts:
            tap.server("\n".join(r.zone_line() for r in texts), "dnsbl.answer.txt")
        reason = f"; {texts[0].value}" if texts else ""
        return (
            f"554 5.7.1 Service unavailable; Client host [{peer_ip}] blocked using "
            f"{self.zone}{reason}"
        )

"""SPF (RFC 7208) evaluation, sans-IO: DNS answers come from a lookup function.

Covers the mechanisms a lab zone uses (all, ip4, ip6, a, mx, include) and the
redirect modifier, with the ten-lookup limit of §4.6.4. The checked identity is
the MAIL FROM domain; the header From is not SPF's business (DMARC's alignment is).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

Lookup = Callable[[str, str], list[str]]  # (name, rtype) -> record values
MAX_LOOKUPS = 10
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass, fail, softfail, neutral, none, permerror
    domain: str
    record: str
    mechanism: str = ""


class _TooManyLookups(Exception):
    pass


def spf_record(lookup: Lookup, domain: str) -> str | None:
    records = [t for t in lookup(domain, "TXT") if t.lower().startswith("v=spf1")]
    return records[0] if len(records) == 1 else None


def check_host(lookup: Lookup, ip: str, domain: str) -> SpfResult:
    """RFC 7208 §4: may `ip` send mail for `domain`?"""
    counter = [0]
    try:
        return _check(lookup, ipaddress.ip_address(ip), domain.lower(), counter)
    except _TooManyLookups:
        return SpfResult("permerror", domain, "", "more than 10 DNS lookups")


def _check(
    lookup: Lookup, ip: ipaddress._BaseAddress, domain: str, counter: list[int]
) -> SpfResult:
    record = spf_record(lookup, domain)
    if record is None:
        return SpfResult("none", domain, "")
    redirect = None
    for term in record.split()[1:]:
        if term.lower().startswith("redirect="):
            redirect = term.split("=", 1)[1]
            continue
        if "=" in term:
            continue  # other modifiers (exp=) do not change the result
        qualifier = QUALIFIERS.get(term[0])
        mechanism = term[1:] if qualifier else term
        if _matches(lookup, ip, domain, mechanism.lower(), counter):
            return SpfResult(qualifier or "pass", domain, record, term)
    if redirect:
        _count(counter)
        return _check(lookup, ip, redirect.lower(), counter)
    return SpfResult("neutral", domain, record, "(no mechanism matched)")


def _count(counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_LOOKUPS:
        raise _TooManyLookups


def _matches(
    lookup: Lookup, ip: ipaddress._BaseAddress, domain: str, mech: str, counter: list[int]
) -> bool:
    name, _, arg = mech.partition(":")
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        try:
            return ip in ipaddress.ip_network(arg, strict=False)
        except ValueError:
            return False
    if name == "a":
        _count(counter)
        return _in_hosts(lookup, ip, [arg or domain])
    if name == "mx":
        _count(counter)
        return _in_hosts(lookup, ip, lookup(arg or domain, "MX"))
    if name == "include":
        _count(counter)
        return _check(lookup, ip, arg, counter).result == "pass"
    return False


def _in_hosts(lookup: Lookup, ip: ipaddress._BaseAddress, hosts: list[str]) -> bool:
    rtype = "A" if ip.version == 4 else "AAAA"
    return any(ip == ipaddress.ip_address(a) for h in hosts for a in lookup(h, rtype))

"""DMARC (RFC 7489) policy decision, sans-IO: parse the record, check alignment.

DMARC passes when SPF or DKIM passed for a domain aligned with the header From
(relaxed alignment: same organizational domain, §3.1.1). The lab's organizational
domain is the last two labels, enough for a.example / mail.a.example.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass, fail, none
    policy: str  # none, quarantine, reject (from p=)
    domain: str  # the header From domain
    record: str
    reason: str


def parse_record(txt: str) -> dict[str, str] | None:
    tags = {}
    for part in txt.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip()
    return tags if tags.get("v") == "DMARC1" else None


def org_domain(domain: str) -> str:
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def aligned(a: str, b: str) -> bool:
    return bool(a) and bool(b) and org_domain(a) == org_domain(b)


def evaluate(
    from_domain: str,
    record: str | None,
    spf_result: str,
    spf_domain: str,
    dkim_result: str,
    dkim_domain: str,
) -> DmarcResult:
    tags = parse_record(record or "")
    if tags is None:
        return DmarcResult("none", "none", from_domain, "", "no DMARC record")
    policy = tags.get("p", "none")
    if spf_result == "pass" and aligned(spf_domain, from_domain):
        return DmarcResult("pass", policy, from_domain, record or "", f"SPF aligned ({spf_domain})")
    if dkim_result == "pass" and aligned(dkim_domain, from_domain):
        reason = f"DKIM aligned (d={dkim_domain})"
        return DmarcResult("pass", policy, from_domain, record or "", reason)
    reason = "neither SPF nor DKIM passed for a domain aligned with the header From"
    return DmarcResult("fail", policy, from_domain, record or "", reason)

"""The receiving MTA's sender authentication: SPF, DKIM and DMARC at end of DATA.

Every DNS question it asks becomes a DNS event, every verdict a note, and the
outcome either an Authentication-Results header (RFC 8601) on the accepted mail
or the DMARC policy's rejection. The decisions come from app.protocols.spf,
dkimpy and app.protocols.dmarc; nothing here writes a verdict by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from app.engines.dkimpy import dkim
from app.engines.header_text import printable
from app.events import PANEL_RELAY, Sink, Tap
from app.protocols import dmarc, spf
from app.world.dns import SimulatedDNS


@dataclass(frozen=True)
class AuthVerdict:
    header: bytes  # Authentication-Results: ... CRLF
    reject: str | None  # the SMTP reply when DMARC says reject
    reject_key: str = "dmarc.reject"  # the explanation of that reply


def _txt_purpose(name: str) -> str:
    """Which standard a TXT name belongs to, so each lookup cites its own RFC: a DKIM
    key (RFC 6376 §3.6.2.2), a DMARC record (RFC 7489 §6.1), else SPF (RFC 7208)."""
    if "._domainkey." in f".{name}":
        return ".dkim"
    if name.startswith("_dmarc."):
        return ".dmarc"
    return ""


class SenderAuth:
    def __init__(self, dns: SimulatedDNS, sink: Sink, *, authserv_id: str, actor: str) -> None:
        self.dns = dns
        self.sink = sink
        self.authserv_id = authserv_id
        self.actor = actor

    def _lookup(self, tap: Tap, name: str, rtype: str) -> list[str]:
        name = name.lower().rstrip(".")
        kind = rtype.lower() + _txt_purpose(name) if rtype == "TXT" else rtype.lower()
        tap.client(f"{name}. IN {rtype} ?", f"dns.query.{kind}")
        answers = self.dns.query(name, rtype)
        if answers:
            tap.server("\n".join(r.zone_line() for r in answers), f"dns.answer.{kind}")
        else:
            tap.server(f"{name}. IN {rtype}: NXDOMAIN", "dns.answer.nxdomain")
        return [r.value for r in answers]

    def check(self, note: Tap, peer_ip: str, mail_from: str, message: bytes) -> AuthVerdict:
        dns_tap = Tap(self.sink, PANEL_RELAY, self.actor, "dns", "DNS", 53)

        def lookup(name: str, rtype: str) -> list[str]:
            return self._lookup(dns_tap, name, rtype)

        # SPF: may the connecting IP send for the MAIL FROM domain? (RFC 7208 §2.4)
        mail_domain = mail_from.rpartition("@")[2].lower()
        spf_res = spf.check_host(lookup, peer_ip, mail_domain) if mail_domain else None
        spf_result = spf_res.result if spf_res else "none"
        spf_text = f"spf={spf_result} smtp.mailfrom={mail_from or '<>'} (client {peer_ip}"
        spf_text += f"; {spf_res.mechanism or spf_res.record})" if spf_res else ")"
        note.note(spf_text, f"spf.result.{spf_result}")

        # DKIM: does the signature verify with the key the d= domain publishes?
        headers = BytesHeaderParser().parsebytes(message)
        sig = headers.get("DKIM-Signature")
        dkim_domain = ""
        if sig is None:
            dkim_result = "none"
            dkim_text = "dkim=none (no DKIM-Signature header)"
        else:
            tags = dict(re.findall(r"(\w+)=([^;]*)", re.sub(r"\s+", "", str(sig))))
            dkim_domain = tags.get("d", "")

            def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
                found = lookup(name.decode(), "TXT")
                return found[0].encode() if found else None

            ok = dkim.verify(message, dnsfunc=dnsfunc)
            dkim_result = "pass" if ok else "fail"
            reason = "" if ok else " (signature does not verify with the published key)"
            dkim_text = f"dkim={dkim_result} header.d={dkim_domain} header.s={tags.get('s', '')}"
            dkim_text += reason
        note.note(dkim_text, f"dkim.result.{dkim_result}")

        # DMARC: the header From's domain publishes what to do when neither aligns.
        from_domain = ""
        for _name, addr in getaddresses([str(headers.get("From", ""))]):
            from_domain = addr.rpartition("@")[2].lower()
        records = [t for t in lookup(f"_dmarc.{from_domain}", "TXT") if t.startswith("v=DMARC1")]
        verdict = dmarc.evaluate(
            from_domain,
            records[0] if records else None,
            spf_result,
            spf_res.domain if spf_res else "",
            dkim_result,
            dkim_domain,
        )
        dmarc_text = (
            f"dmarc={verdict.result} (p={verdict.policy}) header.from={from_domain}: "
            f"{verdict.reason}"
        )
        note.note(dmarc_text, f"dmarc.result.{verdict.result}")

        # Every value below came from the client (MAIL FROM, the message's headers):
        # printable ASCII only, so none can end the field and start another.
        sender = printable(mail_from or "<>")
        signer, author = printable(dkim_domain), printable(from_domain)
        header = (
            f"Authentication-Results: {self.authserv_id};\r\n"
            f"\tspf={spf_result} smtp.mailfrom={sender};\r\n"
            f"\tdkim={dkim_result}"
            + (f" header.d={signer}" if signer else "")
            + f";\r\n\tdmarc={verdict.result} header.from={author}\r\n"
        ).encode()
        reject = None
        if verdict.result == "fail" and verdict.policy == "reject":
            reject = (
                f"550 5.7.1 Rejected by DMARC policy of {author} (p=reject): "
                "SPF and DKIM both failed alignment"
            )
        return AuthVerdict(header, reject)

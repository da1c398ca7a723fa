"""Reply texts every SMTP/LMTP listener of the lab shares, sans-IO.

aiosmtpd writes many replies itself, most with a bare code ("503 Error: need MAIL
command"), while the lab's policies answer with RFC 3463 enhanced codes ("550 5.1.1
..."). The servers advertise ENHANCEDSTATUSCODES (RFC 2034), so every 2xx/4xx/5xx
reply must carry one (RFC 2034 §3: except the greeting and any reply to HELO/EHLO, so
LHLO too; 3xx continuations carry none either, as in Postfix).
`enhance` is the one table that rewrites aiosmtpd's bare replies; the tap applies it
to every reply it writes, and the predict-mode order core (smtp_order.py) to its own.
"""

from __future__ import annotations

import re

MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: a server must accept at least 100
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"  # RFC 5321 §4.5.3.1.10, RFC 3463
BARE_EOL_REPLY = (
    "501 5.5.2 Syntax error: bare <CR> or <LF> in the command line; "
    "end each line with <CR><LF> only"
)
ESC_KEYWORD = "ENHANCEDSTATUSCODES"
HELLO_VERBS = frozenset({"HELO", "EHLO", "LHLO"})

_ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
# aiosmtpd's "250 OK" means a different thing after each command (RFC 3463 §3.2, §3.6).
_OK = {
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
}
# Start of one of aiosmtpd's bare replies -> the RFC 3463 code it gets.
_TABLE: tuple[tuple[str, str], ...] = (
    ("221 Bye", "2.0.0"),
    ("220 Ready to start TLS", "2.0.0"),
    ("250 Syntax:", "2.0.0"),  # HELP <command>
    ("250 Supported commands:", "2.0.0"),
    ("252 Cannot VRFY", "2.0.0"),
    ("454 TLS not available", "4.7.0"),
    ("500 Error: command", "5.5.1"),  # not recognized: invalid command (X.5.1)
    ("500 Error: bad syntax", "5.5.2"),
    ("500 Error: strict ASCII mode", "5.5.2"),
    ("500 Command line too long", "5.5.2"),
    ("500 Line too long", "5.5.2"),
    ("501 Syntax", "5.5.4"),  # invalid command arguments (X.5.4)
    ("501 Error:", "5.5.4"),
    ("501 Not enough value", "5.5.4"),
    ("501 Too many values", "5.5.4"),
    ("501 Supported commands:", "5.5.4"),
    ("502 Could not VRFY", "5.5.4"),
    ("502 EXPN not implemented", "5.5.1"),
    ("503 ", "5.5.1"),  # out of sequence (X.5.1): need MAIL, nested MAIL, send HELO first
    ("530 Must issue a STARTTLS", "5.7.0"),
    ("552 Error: message size exceeds", "5.3.4"),
    ("552 Error: Too much mail data", "5.3.4"),
    ("554 Command refused due to lack of security", "5.7.0"),
    ("555 ", "5.5.4"),
)


def has_bare_eol(line: bytes) -> bool:
    """A command line that ends in a bare LF or holds a CR elsewhere than before its
    final LF (RFC 5321 §2.3.8: lines end in CRLF, and CR and LF appear only together)."""
    if not line.endswith(b"\r\n"):
        return line.endswith(b"\n")
    return b"\r" in line[:-2] or b"\n" in line[:-2]


def enhance(verb: str, reply: str) -> str:
    """One reply line (no CRLF) as it goes out after `verb` (the command it answers,
    upper case; "" for the greeting)."""
    code = reply[:3]
    if not verb or code[:1] not in ("2", "4", "5") or not code.isdigit():
        return reply  # the greeting, 334 and 354 carry no enhanced code
    if verb in HELLO_VERBS:
        return reply  # RFC 2034 §3: no enhanced code in any reply to HELO/EHLO (nor LHLO)
    if _ENHANCED.match(reply):
        return reply
    if reply == "250 OK":
        return _OK.get(verb, "250 2.0.0 Ok")
    sep, text = reply[3:4] or " ", reply[4:]
    status = next((c for prefix, c in _TABLE if reply.startswith(prefix)), None)
    if status is None:
        status = f"{code[0]}.0.0"  # RFC 3463 §3.1: "other undefined status"
    return f"{code}{sep}{status} {text}".rstrip()

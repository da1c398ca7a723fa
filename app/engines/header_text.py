"""Client-supplied text on its way into a header field the lab writes itself
(Received, Return-Path, Delivered-To, Authentication-Results).

A CR or LF copied from a command line into a header ends the field and starts a new
one: "EHLO evil\\rX-Injected: yes" became a header line of its own in the delivered
mail. The listeners now refuse such command lines, but what goes into a header is
still checked here, where it is written, so no other path can carry it in.
"""

from __future__ import annotations

import re

# RFC 5321 §4.1.2 Domain (LDH labels) or address-literal ([IPv4] / [IPv6:...]).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_LITERAL = re.compile(r"\[(?:[0-9.]{7,15}|IPv6:[0-9A-Fa-f:.]{2,45})\]")
_UNSAFE = re.compile(r"[^\x20-\x7e]")
MAX_SHOWN = 255


def printable(text: str) -> str:
    """`text` with every character outside printable ASCII (CR, LF, TAB, other controls,
    non-ASCII) as "?", cut to MAX_SHOWN: safe inside any unstructured header text."""
    return _UNSAFE.sub("?", text[:MAX_SHOWN])


def is_domain(name: str) -> bool:
    return len(name) <= 255 and bool(_DOMAIN.fullmatch(name) or _LITERAL.fullmatch(name))


def comment_quoted(text: str) -> str:
    """`text` as a quoted string that is safe inside a header comment: printable ASCII,
    with the comment and quote delimiters escaped as quoted-pairs (RFC 5322 §3.2.1)."""
    safe = re.sub(r'([\\()"])', r"\\\1", printable(text))
    return f'"{safe}"'


def helo_part(helo: str | None, peer_ip: str) -> str:
    """The "from" clause of a Received field (RFC 5321 §4.4): the HELO name when it is a
    domain or an address literal, else "unknown" with the name quoted in the comment
    (as Exim's "helo=" note), never raw."""
    if helo and is_domain(helo):
        return f"{helo} ([{peer_ip}])"
    if not helo:
        return f"unknown ([{peer_ip}])"
    return f"unknown ([{peer_ip}] helo={comment_quoted(helo)})"

"""POP3 on the wire: line endings, dot-stuffing, sizes and unique-ids (RFC 1939)."""

from __future__ import annotations

import hashlib
import re

CRLF = b"\r\n"
_UIDL_RE = re.compile(r"[\x21-\x7e]{1,70}")  # RFC 1939 §7 unique-id syntax
_LINE_START_DOT = re.compile(rb"(?m)^\.")


def to_wire(message: bytes) -> bytes:
    """A stored message as POP3 sends it: every line ending CRLF, last line too."""
    text = message.replace(CRLF, b"\n").replace(b"\n", CRLF)
    if text and not text.endswith(CRLF):
        text += CRLF
    return text


def wire_size(message: bytes) -> int:
    """The size LIST and STAT report (RFC 1939 §5: exact octets as transmitted)."""
    return len(to_wire(message))


def dot_stuff(body: bytes) -> bytes:
    """RFC 1939 §3: a line starting with '.' gets one more, so '.' alone ends data."""
    return _LINE_START_DOT.sub(b"..", body)


def uidl_of(key: str) -> str:
    """The key itself when it fits RFC 1939's unique-id syntax, else a stable digest."""
    if _UIDL_RE.fullmatch(key):
        return key
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]

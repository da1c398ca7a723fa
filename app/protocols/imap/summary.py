"""What a folder index keeps of one message, so that header FETCH, SIZE, ENVELOPE,
BODYSTRUCTURE and header SEARCH never open the message file.

A Maildir file never changes once delivered (flags live in its name), so a summary
made once from the file's bytes stays true for as long as the file's unique name
exists. `summarize` runs where the bytes are (the MDA's writer thread, the IMAP
adapter's worker thread, or the core itself for an in-memory backend); the core only
reads summaries.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from app.protocols.imap import mime

# The header fields clients fetch for a message list (Thunderbird, Apple Mail, mutt,
# K-9 all ask for a subset of these) plus the ENVELOPE and BODYSTRUCTURE inputs.
CACHED_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
        "priority",
        "x-priority",
        "importance",
        "list-id",
        "list-unsubscribe",
        "delivered-to",
        "newsgroups",
        "x-spam-flag",
    }
)
_parser = BytesHeaderParser(policy=compat32)


@dataclass(frozen=True, slots=True)
class Summary:
    key: str
    size: int  # octets in IMAP form (CRLF line ends): RFC822.SIZE, STATUS SIZE
    pop3_size: int  # octets as POP3 sends them (CRLF, last line ended too)
    fields: tuple[tuple[str, bytes], ...]  # cached fields in message order: (name, lines)
    envelope: bytes  # the ENVELOPE value as FETCH sends it
    body: bytes  # BODY (non-extensible structure)
    bodystructure: bytes

    def header_fields(self, names: tuple[str, ...]) -> bytes:
        """BODY[HEADER.FIELDS (names)] for names that are all in CACHED_FIELDS."""
        wanted = _wanted(names)
        return b"".join([lines for name, lines in self.fields if name in wanted]) + b"\r\n"

    def headers(self) -> Message:
        """The cached fields as an email Message (for SEARCH FROM/SUBJECT/HEADER ...)."""
        return _parser.parsebytes(b"".join(lines for _, lines in self.fields) + b"\r\n")


@functools.lru_cache(maxsize=256)
def _wanted(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(n.lower() for n in names)


def cached(names: tuple[str, ...] | list[str]) -> bool:
    return all(n.lower() in CACHED_FIELDS for n in names)


def split_fields(header: bytes) -> tuple[tuple[str, bytes], ...]:
    """The header block's fields whose names are cached, each with its continuation
    lines, exactly as mime.header_fields would cut them."""
    out: list[tuple[str, bytes]] = []
    name = ""
    current = bytearray()
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if current:
                current += line + b"\r\n"
            continue
        if current:
            out.append((name, bytes(current)))
            current = bytearray()
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        if name in CACHED_FIELDS:
            current += line + b"\r\n"
    if current:
        out.append((name, bytes(current)))
    return tuple(out)


def summarize(key: str, data: bytes) -> Summary:
    """Read everything the index keeps from one message's bytes (call off the loop)."""
    # Imported here: fetch imports this module for the Summary type.
    from app.protocols.imap.fetch import bodystructure, envelope

    msg = mime.ParsedMessage(data)
    raw = msg.raw
    pop3_size = len(raw) + (2 if raw and not raw.endswith(b"\r\n") else 0)
    root = msg.mime
    return Summary(
        key=key,
        size=len(raw),
        pop3_size=pop3_size,
        fields=split_fields(root.header),
        envelope=envelope(root.headers),
        body=bodystructure(root, False),
        bodystructure=bodystructure(root, True),
    )

"""A message as a tree of MIME parts that keeps the exact octets of every part.

IMAP reports sizes and hands out parts byte for byte (BODY[1.MIME], BODY[2.TEXT]),
which the stdlib `email` objects do not keep. So the raw bytes are split here and
each part's header block is read with the stdlib header parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value

_BARE_LF = re.compile(rb"(?<!\r)\n")
_MAX_DEPTH = 20
_header_parser = BytesHeaderParser(policy=compat32)


def to_crlf(data: bytes) -> bytes:
    """Maildir files often use bare LF; IMAP always speaks CRLF (RFC 3501 §2.3.1)."""
    return _BARE_LF.sub(b"\r\n", data)


@dataclass
class MimePart:
    header: bytes  # the header block including the empty line that ends it
    body: bytes
    headers: Message
    maintype: str
    subtype: str
    params: list[tuple[str, str]]
    children: list[MimePart] = field(default_factory=list)
    encapsulated: MimePart | None = None  # the inner message of a message/rfc822 part

    @property
    def raw(self) -> bytes:
        return self.header + self.body

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart"


def header_values(headers: Message, name: str) -> list[str]:
    """The field's values as sent, unfolded. Raw 8-bit text (RFC 6532) is read as UTF-8;
    the stdlib would turn it into Header objects with the bytes replaced."""
    out = []
    for key, value in headers.raw_items():
        if key.lower() == name.lower():
            data = str(value).encode("utf-8", "surrogateescape")
            text = data.decode("utf-8", "replace")
            out.append(re.sub(r"\r?\n(?=[ \t])", "", text).strip())
    return out


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    if raw.startswith(b"\r\n"):
        return b"\r\n", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 4], raw[end + 4 :]


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    rx = re.compile(
        rb"(?:\A|\r\n)--"
        + re.escape(boundary.encode("utf-8", "surrogateescape"))
        + rb"(--)?[ \t]*(?=\r\n|\Z)"
    )
    marks = list(rx.finditer(body))
    parts = []
    for i, m in enumerate(marks):
        if m.group(1):  # closing delimiter
            break
        start = m.end() + 2 if body[m.end() : m.end() + 2] == b"\r\n" else m.end()
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        parts.append(body[start:end] if start <= end else b"")
    return parts


def parse(raw: bytes, default_type: str = "text/plain", depth: int = 0) -> MimePart:
    header, body = split_header(raw)
    headers = _header_parser.parsebytes(header)
    headers.set_default_type(default_type)
    ctype = headers.get_content_type()
    maintype, _, subtype = ctype.partition("/")
    params = []
    for key, value in (headers.get_params() or [])[1:]:
        # A value folded inside its quotes keeps the folding's CRLF here: unfold it
        # (RFC 5322 §2.2.3), or the boundary never matches and BODYSTRUCTURE breaks.
        params.append((key, _unfold(collapse_rfc2231_value(value))))
    part = MimePart(header, body, headers, maintype, subtype, params)
    if depth >= _MAX_DEPTH:
        return part
    if maintype == "multipart":
        boundary = (dict(params).get("boundary") or "").rstrip()
        child_default = "message/rfc822" if subtype == "digest" else "text/plain"
        if boundary:
            part.children = [
                parse(p, child_default, depth + 1) for p in _split_multipart(body, boundary)
            ]
    elif ctype == "message/rfc822":
        part.encapsulated = parse(body, "text/plain", depth + 1)
    return part


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def _child(part: MimePart, n: int, message_context: bool) -> tuple[MimePart, bool] | None:
    if part.children:
        return (part.children[n - 1], False) if 1 <= n <= len(part.children) else None
    if part.encapsulated is not None and not message_context:
        return _child(part.encapsulated, n, True)
    if message_context and n == 1:
        # Part 1 of a single-part message is its body. Below it there are parts only
        # when that body is itself a message/rfc822 (RFC 3501 §6.4.5): not the same again.
        return part, False
    return None


def locate(root: MimePart, numbers: tuple[int, ...]) -> MimePart | None:
    part, ctx = root, True
    for n in numbers:
        found = _child(part, n, ctx)
        if found is None:
            return None
        part, ctx = found
    return part


def header_fields(header: bytes, names: tuple[str, ...], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields, then the empty line."""
    wanted = {n.lower() for n in names}
    out = bytearray()
    keep = False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out += line + b"\r\n"
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        keep = (name in wanted) != exclude
        if keep:
            out += line + b"\r\n"
    return bytes(out) + b"\r\n"


def line_count(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


class ParsedMessage:
    """One stored message in IMAP form (CRLF), parsed only when a command needs it."""

    def __init__(self, data: bytes) -> None:
        self.raw = to_crlf(data)
        self._mime: MimePart | None = None
        self._text: str | None = None
        self._folded: str | None = None
        self._folded_header: str | None = None

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def mime(self) -> MimePart:
        if self._mime is None:
            self._mime = parse(self.raw)
        return self._mime

    @property
    def body_text(self) -> str:
        """Decoded text of the body parts, for SEARCH BODY/TEXT."""
        if self._text is None:
            chunks = [self.mime.body.decode("utf-8", "replace")]
            stack = [self.mime]
            while stack:
                part = stack.pop()
                stack.extend(part.children)
                if part.encapsulated is not None:
                    stack.append(part.encapsulated)
                if part.maintype == "text" and not part.children:
                    chunks.append(_decode_body(part))
            self._text = "\n".join(chunks)
        return self._text


    @property
    def folded_text(self) -> str:
        """body_text case-folded once, for SEARCH BODY/TEXT."""
        if self._folded is None:
            self._folded = self.body_text.casefold()
        return self._folded

    @property
    def folded_header(self) -> str:
        """The header block with encoded-words decoded, case-folded, for SEARCH TEXT."""
        if self._folded_header is None:
            text = self.mime.header.decode("utf-8", "replace")
            self._folded_header = decode_words(text).casefold()
        return self._folded_header


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded; malformed ones are left as they are."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # malformed encoded-words: search the raw text instead
        return value


def _decode_body(part: MimePart) -> str:
    msg = message_from_bytes(part.raw, policy=compat32)
    payload = msg.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = msg.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")

"""FETCH data items (RFC 3501 §6.4.5, §7.4.2): parsing the request, building the answer.

ENVELOPE and BODYSTRUCTURE are computed from the stdlib `email` header parser over
the exact MIME tree in `mime.py`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from app.protocols.imap import mime
from app.protocols.imap.parser import Atom, Token
from app.protocols.imap.summary import Summary, cached
from app.protocols.imap.wire import bad, format_flags, format_internaldate, literal, nstring

SIMPLE = ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY")
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_ITEM = re.compile(r"(BODY|BODY\.PEEK)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?\Z", re.I)
_SECTION = re.compile(
    r"(?P<parts>[1-9]\d{0,5}(?:\.[1-9]\d{0,5}){0,20})?"
    r"(?:(?(parts)\.)(?P<spec>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    r"(?: \((?P<fields>[^()]*)\))?\Z",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Section:
    parts: tuple[int, ...] = ()
    spec: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()

    def label(self) -> str:
        text = ".".join(map(str, self.parts))
        if self.spec:
            text += ("." if text else "") + self.spec
        if self.fields:
            text += " (" + " ".join(self.fields) + ")"
        return text


@dataclass(frozen=True, slots=True)
class FetchItem:
    kind: str  # one of SIMPLE, or "SECTION", "RFC822", "RFC822.HEADER", "RFC822.TEXT"
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        return self.kind in ("RFC822", "RFC822.TEXT") or (self.kind == "SECTION" and not self.peek)

    @property
    def needs_message(self) -> bool:
        return self.kind not in ("FLAGS", "UID", "INTERNALDATE")

    @property
    def from_summary(self) -> bool:
        """Can the folder index answer this without the message file?"""
        if self.kind in _SUMMARY_KINDS:
            return True
        s = self.section
        return (
            self.kind == "SECTION"
            and s is not None
            and not s.parts
            and s.spec == "HEADER.FIELDS"
            and cached(s.fields)
        )


_SUMMARY_KINDS = frozenset(
    {"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY"}
)


def _parse_one(text: str) -> FetchItem:
    upper = text.upper()
    if upper in SIMPLE:
        return FetchItem(upper)
    if upper in ("RFC822", "RFC822.TEXT"):
        return FetchItem(upper)
    if upper == "RFC822.HEADER":
        return FetchItem(upper, peek=True)
    m = _ITEM.match(text)
    if not m:
        raise bad(f"Unknown FETCH item {text}")
    s = _SECTION.match(m.group(2))
    if not s:
        raise bad(f"Invalid section [{m.group(2)}]")
    spec = (s.group("spec") or "").upper()
    fields: tuple[str, ...] = ()
    if spec.startswith("HEADER.FIELDS"):
        if s.group("fields") is None or not s.group("fields").strip():
            raise bad(f"{spec} needs a list of header names")
        fields = tuple(f.strip('"') for f in s.group("fields").split())
    elif s.group("fields") is not None:
        raise bad("Only HEADER.FIELDS takes a list")
    parts = tuple(int(p) for p in s.group("parts").split(".")) if s.group("parts") else ()
    if spec == "MIME" and not parts:
        raise bad("MIME needs a part number")
    partial = (int(m.group(3)), int(m.group(4))) if m.group(3) else None
    return FetchItem(
        "SECTION", Section(parts, spec, fields), partial, m.group(1).upper() == "BODY.PEEK"
    )


def parse_fetch_items(token: Token) -> list[FetchItem]:
    if isinstance(token, Atom) and token.upper() in MACROS:
        return [FetchItem(k) for k in MACROS[token.upper()]]
    tokens = token if isinstance(token, list) else [token]
    if not tokens:
        raise bad("Empty FETCH item list")
    items = []
    for tok in tokens:
        if not isinstance(tok, Atom):
            raise bad("FETCH items must be atoms")
        items.append(_parse_one(tok.value))
    return items


# -- answers -------------------------------------------------------------------
def _header(h: Message, name: str) -> str | None:
    values = mime.header_values(h, name)
    return values[0] if values else None


def _split_groups(value: str) -> list[tuple[str | None, str]]:
    """RFC 5322 §3.4 groups ("Team: a@x, b@y;") apart from plain addresses:
    (group name or None, the addresses' text). Quotes, comments and <...> are skipped."""
    out: list[tuple[str | None, str]] = []
    group: str | None = None
    start = depth = 0
    comma = -1  # the last top-level comma: a group's name starts after it
    quoted = angle = False
    i = 0
    while i < len(value):
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif depth:
            pass
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            comma = i
        elif c == ":" and not angle and group is None:
            head = max(start, comma + 1)
            if value[start:head].strip(" ,"):
                out.append((None, value[start:head]))  # plain addresses before the group
            group, start = value[head:i].strip().strip('"'), i + 1
        elif c == ";" and group is not None:
            out.append((group, value[start:i]))
            group, start = None, i + 1
        i += 1
    if group is not None:
        out.append((group, value[start:]))  # an unterminated group
    elif value[start:].strip():
        out.append((None, value[start:]))
    return [(g, text) for g, text in out if g is not None or text.strip(" ,")]


def _mailbox(display: str | None, box: str | None, host: str | None) -> bytes:
    return b"(" + nstring(display) + b" NIL " + nstring(box) + b" " + nstring(host) + b")"


def _addresses(h: Message, name: str, fallback: str | None = None) -> bytes:
    values = mime.header_values(h, name) or (mime.header_values(h, fallback) if fallback else [])
    if not values:
        return b"NIL"
    out = []
    for group, text in _split_groups(", ".join(values)):
        if group is not None:  # RFC 3501 §7.4.2: group start (NIL NIL name NIL) ... end
            out.append(_mailbox(None, group, None))
        for display, addr in getaddresses([text]):
            if not addr:
                continue
            box, at, host = addr.rpartition("@")
            if not at:
                box, host = addr, ""
            out.append(_mailbox(display or None, box, host or None))
        if group is not None:
            out.append(_mailbox(None, None, None))
    return b"(" + b"".join(out) + b")" if out else b"NIL"


def envelope(h: Message) -> bytes:
    fields = [
        nstring(_header(h, "Date")),
        nstring(_header(h, "Subject")),
        _addresses(h, "From"),
        _addresses(h, "Sender", "From"),
        _addresses(h, "Reply-To", "From"),
        _addresses(h, "To"),
        _addresses(h, "Cc"),
        _addresses(h, "Bcc"),
        nstring(_header(h, "In-Reply-To")),
        nstring(_header(h, "Message-ID")),
    ]
    return b"(" + b" ".join(fields) + b")"


def _param_list(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(nstring(k.upper()) + b" " + nstring(v) for k, v in params) + b")"


def _extension(h: Message) -> list[bytes]:
    disposition = h.get_content_disposition()
    if disposition:
        dparams = (h.get_params(header="content-disposition") or [])[1:]
        dsp = (
            b"("
            + nstring(disposition.upper())
            + b" "
            + _param_list([(k, str(v)) for k, v in dparams])
            + b")"
        )
    else:
        dsp = b"NIL"
    return [dsp, nstring(_header(h, "Content-Language")), nstring(_header(h, "Content-Location"))]


def bodystructure(part: mime.MimePart, extensible: bool = True) -> bytes:
    h = part.headers
    if part.is_multipart:
        # RFC 3501 body-type-mpart has at least one part.
        kids = part.children or [mime.parse(b"\r\n")]
        out = b"".join(bodystructure(k, extensible) for k in kids)
        out += b" " + nstring(part.subtype.upper())
        if extensible:
            out += b" " + b" ".join([_param_list(part.params), *_extension(h)])
        return b"(" + out + b")"
    params = list(part.params)
    if part.maintype == "text" and not any(k.lower() == "charset" for k, _ in params):
        params.append(("CHARSET", "us-ascii"))
    fields = [
        nstring(part.maintype.upper()),
        nstring(part.subtype.upper()),
        _param_list(params),
        nstring(_header(h, "Content-ID")),
        nstring(_header(h, "Content-Description")),
        nstring((_header(h, "Content-Transfer-Encoding") or "7BIT").upper()),
        str(len(part.body)).encode(),
    ]
    if part.encapsulated is not None:
        fields += [
            envelope(part.encapsulated.headers),
            bodystructure(part.encapsulated, extensible),
            str(mime.line_count(part.body)).encode(),
        ]
    elif part.maintype == "text":
        fields.append(str(mime.line_count(part.body)).encode())
    if extensible:
        fields += [nstring(_header(h, "Content-MD5")), *_extension(h)]
    return b"(" + b" ".join(fields) + b")"


def section_data(msg: mime.ParsedMessage, section: Section) -> bytes:
    root = msg.mime
    if not section.parts and not section.spec:
        return msg.raw
    part = mime.locate(root, section.parts)
    if part is None:
        return b""
    if section.spec == "":
        return part.body
    if section.spec == "MIME":
        return part.header
    # HEADER/TEXT refer to a message: the top level or an encapsulated message/rfc822.
    target = root if not section.parts else part.encapsulated
    if target is None:
        return b""
    if section.spec == "HEADER":
        return target.header
    if section.spec == "TEXT":
        return target.body
    return mime.header_fields(target.header, section.fields, section.spec.endswith(".NOT"))


@dataclass(slots=True)
class FetchSubject:
    """What one FETCH answer is about."""

    uid: int
    flags: frozenset[str]
    internaldate: float
    message: mime.ParsedMessage | None  # loaded only when an item needs it
    summary: Summary | None = None  # the folder index's record, when every item fits it


def render(item: FetchItem, m: FetchSubject) -> bytes:
    kind = item.kind
    if kind == "FLAGS":
        return b"FLAGS " + format_flags(m.flags)
    if kind == "UID":
        return b"UID %d" % m.uid
    if kind == "INTERNALDATE":
        return b"INTERNALDATE " + nstring(format_internaldate(m.internaldate))
    if m.summary is not None:
        return _render_summary(item, m.summary)
    msg = m.message
    assert msg is not None
    if kind == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % msg.size
    if kind == "ENVELOPE":
        return b"ENVELOPE " + envelope(msg.mime.headers)
    if kind == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + bodystructure(msg.mime, True)
    if kind == "BODY":
        return b"BODY " + bodystructure(msg.mime, False)
    if kind == "RFC822":
        return b"RFC822 " + literal(msg.raw)
    if kind == "RFC822.HEADER":
        return b"RFC822.HEADER " + literal(msg.mime.header)
    if kind == "RFC822.TEXT":
        return b"RFC822.TEXT " + literal(msg.mime.body)
    assert item.section is not None
    data = section_data(msg, item.section)
    label = f"BODY[{item.section.label()}]"
    if item.partial is not None:
        origin, length = item.partial
        data = data[origin : origin + length]
        label += f"<{origin}>"
    return label.encode() + b" " + literal(data)


def _render_summary(item: FetchItem, s: Summary) -> bytes:
    kind = item.kind
    if kind == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % s.size
    if kind == "ENVELOPE":
        return b"ENVELOPE " + s.envelope
    if kind == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + s.bodystructure
    if kind == "BODY":
        return b"BODY " + s.body
    assert item.section is not None
    data = s.header_fields(item.section.fields)
    if item.partial is not None:
        origin, length = item.partial
        data = data[origin : origin + length]
    return _label(item) + b"{%d}\r\n" % len(data) + data


@functools.lru_cache(maxsize=256)
def _label(item: FetchItem) -> bytes:
    """'BODY[HEADER.FIELDS (FROM)]<0> ' — the same for every message of a FETCH."""
    assert item.section is not None
    label = f"BODY[{item.section.label()}]"
    if item.partial is not None:
        label += f"<{item.partial[0]}>"
    return label.encode() + b" "


SummaryRenderer = Callable[[int, frozenset[str], float, Summary], bytes]


def summary_renderer(item: FetchItem) -> SummaryRenderer:
    """`render` for an item the index answers, decided once per FETCH instead of once
    per message: a header FETCH of a whole folder is this, a thousand times."""
    kind = item.kind
    if kind == "UID":
        return lambda uid, flags, date, s: b"UID %d" % uid
    if kind == "FLAGS":
        return lambda uid, flags, date, s: b"FLAGS " + format_flags(flags)
    if kind == "INTERNALDATE":
        return lambda uid, flags, date, s: b"INTERNALDATE " + nstring(format_internaldate(date))
    if kind == "SECTION":
        assert item.section is not None
        label, fields, partial = _label(item), item.section.fields, item.partial

        def section(uid: int, flags: frozenset[str], date: float, s: Summary) -> bytes:
            data = s.header_fields(fields)
            if partial is not None:
                data = data[partial[0] : partial[0] + partial[1]]
            return label + b"{%d}\r\n" % len(data) + data

        return section
    return lambda uid, flags, date, s: _render_summary(item, s)

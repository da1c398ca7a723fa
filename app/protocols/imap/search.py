"""SEARCH keys (RFC 3501 §6.4.4) compiled into predicates over messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from app.protocols.imap.mime import ParsedMessage, decode_words, header_values
from app.protocols.imap.parser import Atom, ParseError, Token
from app.protocols.imap.summary import CACHED_FIELDS, Summary
from app.protocols.imap.wire import (
    CommandError,
    SequenceSet,
    bad,
    number_arg,
    parse_date,
    seqset_arg,
    text_arg,
)


@dataclass(slots=True)
class SearchSubject:
    seq: int
    uid: int
    flags: frozenset[str]
    internaldate: float
    recent: bool
    max_seq: int
    max_uid: int
    load: Callable[[], ParsedMessage]
    summary: Summary | None = None  # the folder index's record, when the command has it
    _msg: ParsedMessage | None = field(default=None)
    _cached: Message | None = field(default=None)

    @property
    def message(self) -> ParsedMessage:
        if self._msg is None:
            self._msg = self.load()
        return self._msg

    def headers_for(self, name: str) -> Message:
        """Where to look for header `name`: the index's cached fields if it is one of
        them, else the message itself (which may mean reading the file)."""
        if self.summary is not None and name.lower() in CACHED_FIELDS:
            if self._cached is None:
                self._cached = self.summary.headers()
            return self._cached
        return self.message.mime.headers

    @property
    def size(self) -> int:
        return self.summary.size if self.summary is not None else self.message.size


Predicate = Callable[[SearchSubject], bool]

_FLAG_KEYS: dict[str, tuple[str, bool]] = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = ("FROM", "TO", "CC", "BCC", "SUBJECT")
_CHARSETS = ("UTF-8", "US-ASCII")


_decoded = decode_words


_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})


def _header_has(s: SearchSubject, name: str, needle: str) -> bool:
    values = header_values(s.headers_for(name), name)
    if not needle:
        return bool(values)
    if any(needle in _decoded(v).casefold() for v in values):
        return True
    if name.lower() not in _ADDRESS_HEADERS:
        return False
    # Addresses as parsed, comments and folding whitespace gone: "alice (home) @ a.example"
    # is still alice@a.example to a search, as Dovecot matches it.
    return any(
        needle in f"{_decoded(display)} <{addr}>".casefold()
        for display, addr in getaddresses(values)
    )


def _sent_date(s: SearchSubject) -> dt.date | None:
    values = header_values(s.headers_for("Date"), "Date")
    try:
        return parsedate_to_datetime(values[0]).date() if values else None
    except (TypeError, ValueError):
        return None


def _internal_date(s: SearchSubject) -> dt.date:
    return dt.datetime.fromtimestamp(s.internaldate).date()


def _compare(which: Callable[[SearchSubject], dt.date | None], op: str, day: dt.date) -> Predicate:
    def pred(s: SearchSubject) -> bool:
        d = which(s)
        if d is None:
            return False
        return d < day if op == "BEFORE" else d == day if op == "ON" else d >= day

    return pred


class _Stream:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.reads_body = False  # a BODY or TEXT key: the index cannot answer it

    def done(self) -> bool:
        return self.pos >= len(self.tokens)

    def next(self, what: str = "search key") -> Token:
        if self.done():
            raise bad(f"Missing {what}")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok


def _seq_pred(sset: SequenceSet, uid: bool) -> Predicate:
    if uid:
        return lambda s: sset.contains(s.uid, s.max_uid)
    return lambda s: sset.contains(s.seq, s.max_seq)


def _key(st: _Stream, depth: int = 0) -> Predicate:
    if depth > 50:
        raise bad("Search keys nested too deeply")
    tok = st.next()
    if isinstance(tok, list):
        sub = _Stream(tok)
        preds = []
        while not sub.done():
            preds.append(_key(sub, depth + 1))
        st.reads_body |= sub.reads_body
        if not preds:
            raise bad("Empty search key list")
        return lambda s: all(p(s) for p in preds)
    if isinstance(tok, bytes):
        raise bad("Expected a search key, got a string")
    name = tok.upper()
    if name == "ALL":
        return lambda s: True
    if name in _FLAG_KEYS:
        flag, want = _FLAG_KEYS[name]
        return lambda s: (flag in s.flags) == want
    if name == "RECENT":
        return lambda s: s.recent
    if name == "OLD":
        return lambda s: not s.recent
    if name == "NEW":
        return lambda s: s.recent and "\\Seen" not in s.flags
    if name in ("KEYWORD", "UNKEYWORD"):
        word = text_arg(st.next("keyword")).casefold()
        want = name == "KEYWORD"
        # Flags are matched case-insensitively, as Dovecot does.
        return lambda s: any(f.casefold() == word for f in s.flags) == want
    if name in _HEADER_KEYS:
        needle = text_arg(st.next("search string")).casefold()
        return lambda s: _header_has(s, name, needle)
    if name == "HEADER":
        field_name = text_arg(st.next("header name"))
        needle = text_arg(st.next("search string")).casefold()
        return lambda s: _header_has(s, field_name, needle)
    if name in ("BODY", "TEXT"):
        st.reads_body = True
    if name == "BODY":
        needle = text_arg(st.next("search string")).casefold()
        return lambda s: needle in s.message.folded_text
    if name == "TEXT":
        needle = text_arg(st.next("search string")).casefold()
        return lambda s: needle in s.message.folded_header or needle in s.message.folded_text
    if name in ("LARGER", "SMALLER"):
        n = number_arg(st.next("size"), "size")
        if name == "LARGER":
            return lambda s: s.size > n
        return lambda s: s.size < n
    if name in ("BEFORE", "ON", "SINCE"):
        return _compare(_internal_date, name, parse_date(st.next("date")))
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        return _compare(_sent_date, name[4:], parse_date(st.next("date")))
    if name == "UID":
        return _seq_pred(seqset_arg(st.next("UID set")), True)
    if name == "NOT":
        inner = _key(st, depth + 1)
        return lambda s: not inner(s)
    if name == "OR":
        a = _key(st, depth + 1)
        b = _key(st, depth + 1)
        return lambda s: a(s) or b(s)
    if name[:1].isdigit() or name[:1] == "*":
        try:
            return _seq_pred(SequenceSet.parse(name), False)
        except ParseError as exc:
            raise bad(str(exc)) from exc
    raise bad(f"Unknown search key {tok.value}")


def parse_search(tokens: list[Token]) -> Predicate:
    return parse_search_plan(tokens)[0]


def parse_search_plan(tokens: list[Token]) -> tuple[Predicate, bool]:
    """The predicate, and whether it reads message bodies (BODY, TEXT): a search
    that does not is answered from flags and the folder index alone."""
    st = _Stream(tokens)
    if tokens and isinstance(tokens[0], Atom) and tokens[0].upper() == "CHARSET":
        st.next()
        charset = text_arg(st.next("charset")).upper()
        if charset not in _CHARSETS:
            raise CommandError("NO", f"[BADCHARSET ({' '.join(_CHARSETS)})] Unsupported charset")
    preds = []
    while not st.done():
        preds.append(_key(st))
    if not preds:
        raise bad("SEARCH needs at least one key")
    return (lambda s: all(p(s) for p in preds)), st.reads_body

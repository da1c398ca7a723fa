"""Small pieces of IMAP syntax shared by the commands: strings, flags, dates, sets."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from app.protocols.imap.parser import Atom, ParseError, Token

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_FLAG_BY_UPPER = {f.upper(): f for f in SYSTEM_FLAGS}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}
# flag-keyword = atom (RFC 3501 §9): no specials, no "]" either, at most 100 octets here.
_KEYWORD_OK = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,100}\Z")
_ATOM_OK = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+\Z")


class CommandError(Exception):
    """Ends a command early with a tagged NO or BAD."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def bad(text: str) -> CommandError:
    return CommandError("BAD", text)


def no(text: str) -> CommandError:
    return CommandError("NO", text)


# -- strings ---------------------------------------------------------------
def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def nstring(value: str | bytes | None) -> bytes:
    """NIL, a quoted string when it is short and plain, else a literal."""
    if value is None:
        return b"NIL"
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(data) < 1000 and all(0x20 <= b < 0x7F for b in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def astring_out(value: str) -> bytes:
    """A mailbox name or similar: bare atom when allowed, else quoted/literal."""
    if _ATOM_OK.match(value) and value.upper() != "NIL":
        return value.encode()
    return nstring(value)


def text_arg(token: Token, what: str = "argument") -> str:
    """An astring argument as text (atoms and strings alike)."""
    if isinstance(token, Atom):
        return token.value
    if isinstance(token, bytes):
        return token.decode("utf-8", "replace")
    raise bad(f"Expected a string for the {what}, not a list")


def mailbox_arg(token: Token) -> str:
    name = text_arg(token, "mailbox name")
    return "INBOX" if name.upper() == "INBOX" else name


def atom_arg(token: Token, what: str) -> str:
    if not isinstance(token, Atom):
        raise bad(f"Expected an atom for the {what}")
    return token.value


def number_arg(token: Token, what: str) -> int:
    value = atom_arg(token, what)
    if not value.isdigit() or len(value) > 10:
        raise bad(f"Expected a number for the {what}")
    return int(value)


# -- flags -----------------------------------------------------------------
def format_flags(flags: Iterable[str]) -> bytes:
    """System flags in a fixed order, then \\Recent, then keywords sorted."""
    if isinstance(flags, frozenset):
        return _format_frozen(flags)  # the common case: a message's flag set
    return _format(set(flags))


@functools.lru_cache(maxsize=1024)
def _format_frozen(flags: frozenset[str]) -> bytes:
    # A folder has a handful of distinct flag sets: a FETCH of 1,000 messages
    # formats each once.
    return _format(flags)


def _format(flags: set[str] | frozenset[str]) -> bytes:
    ordered = [f for f in (*SYSTEM_FLAGS, "\\Recent") if f in flags]
    ordered += sorted(f for f in flags if not f.startswith("\\"))
    return b"(" + " ".join(ordered).encode() + b")"


def parse_flags(tokens: list[Token]) -> frozenset[str]:
    """System flags and keywords ($Junk, NonJunk, any atom) from a flag list.
    \\Recent is the server's to set (RFC 3501 §2.3.2), so it is ignored here."""
    flags = set()
    for tok in tokens:
        name = atom_arg(tok, "flag")
        if name.startswith("\\"):
            upper = name.upper()
            if upper == "\\RECENT":
                continue
            if upper not in _FLAG_BY_UPPER:
                raise bad(f"Unknown system flag {name}")
            flags.add(_FLAG_BY_UPPER[upper])
        elif not _KEYWORD_OK.match(name):
            raise bad(f"Invalid keyword {name}")
        else:
            flags.add(name)
    return frozenset(flags)


# -- dates -----------------------------------------------------------------
def format_internaldate(ts: float) -> str:
    d = dt.datetime.fromtimestamp(ts).astimezone()
    return f"{d.day:02d}-{MONTHS[d.month - 1]}-{d.year} {d:%H:%M:%S} {d:%z}"


_DATE_TIME = re.compile(
    r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)


def parse_date_time(text: str) -> float:
    m = _DATE_TIME.match(text)
    if not m or m.group(2).upper() not in _MONTH_NUM:
        raise bad("Invalid date-time, expected e.g. 17-Jul-1996 02:44:25 -0700")
    day, _, year, hh, mm, ss, sign, zh, zm = m.groups()
    offset = dt.timedelta(hours=int(zh), minutes=int(zm)) * (1 if sign == "+" else -1)
    try:
        when = dt.datetime(
            int(year),
            _MONTH_NUM[m.group(2).upper()],
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=dt.timezone(offset),
        )
    except ValueError as exc:
        raise bad("Invalid date-time") from exc
    return when.timestamp()


def parse_date(token: Token) -> dt.date:
    text = text_arg(token, "date")
    m = re.match(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z", text)
    if not m or m.group(2).upper() not in _MONTH_NUM:
        raise bad("Invalid date, expected e.g. 1-Feb-1994")
    try:
        return dt.date(int(m.group(3)), _MONTH_NUM[m.group(2).upper()], int(m.group(1)))
    except ValueError as exc:
        raise bad("Invalid date") from exc


# -- sequence sets ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SequenceSet:
    """RFC 3501 sequence-set; None stands for "*" (the largest number in use)."""

    ranges: tuple[tuple[int | None, int | None], ...]

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        ranges = []
        for part in text.split(","):
            lo, sep, hi = part.partition(":")
            a = _seq_number(lo)
            b = _seq_number(hi) if sep else a
            ranges.append((a, b))
        return cls(tuple(ranges))

    def contains(self, n: int, largest: int) -> bool:
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            if lo <= n <= hi:
                return True
        return False

    def explicit_max(self) -> int:
        return max((x for r in self.ranges for x in r if x is not None), default=0)

    def uses_star(self) -> bool:
        return any(x is None for r in self.ranges for x in r)


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or text.startswith("0") or len(text) > 10:
        raise ParseError(f"Invalid sequence set element {text!r}")
    return int(text)


def seqset_arg(token: Token) -> SequenceSet:
    try:
        return SequenceSet.parse(atom_arg(token, "sequence set"))
    except ParseError as exc:
        raise bad(str(exc)) from exc


def compress_numbers(numbers: Iterable[int]) -> str:
    """1,2,3,5 -> "1:3,5" for COPYUID and friends."""
    out: list[str] = []
    nums = sorted(numbers)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}:{nums[j]}")
        i = j + 1
    return ",".join(out)

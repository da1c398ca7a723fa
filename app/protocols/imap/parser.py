"""Tokenizer for complete IMAP client commands (RFC 3501 §9 / RFC 9051 §9).

The input is one whole command exactly as framed by the connection: the command
line, any literals it announced, and the final CRLF. The output is a tag, a
command name and a list of tokens:

* `Atom` for atoms (also flags, sequence sets and FETCH items such as
  ``BODY.PEEK[HEADER.FIELDS (FROM)]<0.100>``, whose bracketed part may hold spaces),
* `bytes` for quoted strings and literals,
* `list` for parenthesised lists.

Anything malformed raises `ParseError`, which the server turns into BAD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line announcing a literal ends in {n} (synchronizing) or {n+} (RFC 7888 LITERAL+).
LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n\Z")

# ASTRING-CHAR without "+" (RFC 3501 "tag"); checked byte by byte.
_TAG_EXCLUDED = frozenset(b'(){%*"\\+ ')
_ATOM_STOP = frozenset(b'(){" ')


class ParseError(ValueError):
    """The command is not valid IMAP syntax; the text says why, for the BAD reply."""


@dataclass(frozen=True, slots=True)
class Atom:
    value: str

    def upper(self) -> str:
        return self.value.upper()


Token = Atom | bytes | list["Token"]


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str  # upper case; "UID FETCH" for UID commands
    args: list[Token]


def is_valid_tag(tag: bytes) -> bool:
    return bool(tag) and all(0x21 <= b <= 0x7E and b not in _TAG_EXCLUDED for b in tag)


def sniff(raw: bytes) -> tuple[str | None, str | None]:
    """Best-effort tag and command name of a command we could not parse (for BAD)."""
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ", 2)
    tag = parts[0] if parts and is_valid_tag(parts[0]) else None
    name = None
    if tag is not None and len(parts) > 1 and parts[1].isalpha() and parts[1].isascii():
        name = parts[1].decode().upper()
        if name == "UID" and len(parts) > 2:
            sub = parts[2].split(b" ", 1)[0]
            name = f"UID {sub.decode('ascii', 'replace').upper()}" if sub.isalpha() else name
    return (tag.decode() if tag else None), name


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def expect_space(self) -> None:
        if self.peek() != 0x20:
            raise ParseError("Expected a space")
        self.pos += 1

    def tag(self) -> str:
        end = self.data.find(b" ")
        tag = self.data[: end if end >= 0 else len(self.data)]
        if not is_valid_tag(tag):
            raise ParseError("Invalid tag")
        self.pos = len(tag)
        return tag.decode()

    def atom(self) -> Atom:
        start = self.pos
        data = self.data
        while self.pos < len(data):
            c_pos = self.pos
            c = data[c_pos]
            if c in _ATOM_STOP:
                break
            if c < 0x21 or c > 0x7E:
                raise ParseError("Invalid character in command (only strings may hold 8-bit data)")
            if c == 0x5B:  # "[": a FETCH section runs to its "]" and may contain spaces
                close = data.find(b"]", c_pos)
                if close < 0:
                    raise ParseError("Missing ] in section")
                inner = data[c_pos + 1 : close]
                if any(b < 0x20 or b > 0x7E for b in inner):
                    raise ParseError("Invalid character in section")
                self.pos = close + 1
                continue
            self.pos += 1
        if self.pos == start:
            raise ParseError("Expected an atom")
        return Atom(data[start : self.pos].decode("ascii"))

    def quoted(self) -> bytes:
        self.pos += 1  # opening quote
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise ParseError("Unterminated quoted string")
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c in (0x0A, 0x0D):
                raise ParseError("Line break inside a quoted string")
            if c == 0x5C:
                if self.pos >= len(data) or data[self.pos] not in (0x22, 0x5C):
                    raise ParseError('Only \\" and \\\\ may be escaped in a quoted string')
                c = data[self.pos]
                self.pos += 1
            out.append(c)

    def literal(self) -> bytes:
        m = re.compile(rb"\{(\d{1,20})\+?\}\r?\n").match(self.data, self.pos)
        if not m:
            raise ParseError("Malformed literal")
        size = int(m.group(1))
        start = m.end()
        if start + size > len(self.data):
            raise ParseError("Literal shorter than announced")
        self.pos = start + size
        return self.data[start : self.pos]

    def token(self, depth: int = 0) -> Token:
        c = self.peek()
        if c == 0x28:  # "("
            if depth > 20:
                raise ParseError("Lists nested too deeply")
            self.pos += 1
            items: list[Token] = []
            while True:
                c = self.peek()
                if c is None:
                    raise ParseError("Missing )")
                if c == 0x29:
                    self.pos += 1
                    return items
                if items:
                    self.expect_space()
                items.append(self.token(depth + 1))
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        if c == 0x29:
            raise ParseError("Unexpected )")
        return self.atom()

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while not self.at_end():
            self.expect_space()
            out.append(self.token())
            nxt = self.peek()
            if nxt is not None and nxt != 0x20:
                raise ParseError("Expected a space between arguments")
        return out


def _strip_literals(raw: bytes) -> bytes:
    # NUL and other checks apply to the command text, not to literal contents.
    out = bytearray()
    pos = 0
    rx = re.compile(rb"\{(\d{1,20})\+?\}\r?\n")
    while True:
        m = rx.search(raw, pos)
        if not m:
            out += raw[pos:]
            return bytes(out)
        out += raw[pos : m.end()]
        pos = m.end() + int(m.group(1))


def parse_command(raw: bytes) -> Command:
    """Parse one complete command (ending in CRLF, literals included)."""
    if not raw.endswith(b"\n"):
        raise ParseError("Command must end with CRLF")
    body = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if b"\x00" in _strip_literals(body):
        raise ParseError("NUL octet in command")
    reader = _Reader(body)
    tag = reader.tag()
    reader.expect_space()
    name = reader.atom().upper()
    if not name.isalpha():
        raise ParseError("Invalid command name")
    if name == "UID":
        reader.expect_space()
        sub = reader.atom().upper()
        if not sub.isalpha():
            raise ParseError("Invalid UID command")
        name = f"UID {sub}"
    return Command(tag, name, reader.tokens())

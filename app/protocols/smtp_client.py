"""The client side of SMTP and LMTP, sans-IO: command bytes out, server bytes in,
complete replies out (RFC 5321 §4.1, §4.2, §4.5.2; RFC 2033; RFC 2920).

No sockets here; `app/engines/smtp_client.py` puts it on a connection.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_REPLY_LINE = 2048  # RFC 5321 §4.5.3.1.5 allows 512; some servers say more
MAX_REPLY_LINES = 100


class ProtocolError(ValueError):
    """The server sent something that is not an SMTP reply."""


class Reply(NamedTuple):
    code: int
    message: str  # the text of every line without its code, lines joined by "\n"

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class ReplyReader:
    """Feed it the server's bytes; it returns each reply once its last line arrived."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code = 0

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            reply = self._line(line.rstrip(b"\r\n"))
            if reply is not None:
                replies.append(reply)
        if len(self._buffer) > MAX_REPLY_LINE:
            raise ProtocolError("reply line too long")
        return replies

    def _line(self, line: bytes) -> Reply | None:
        head = line[:3]
        sep = line[3:4]
        if len(line) > MAX_REPLY_LINE or not (head.isdigit() and sep in (b"", b" ", b"-")):
            raise ProtocolError(f"not an SMTP reply line: {line[:80]!r}")
        code = int(head)
        if self._lines and code != self._code:
            raise ProtocolError("a multi-line reply changed its code")
        self._code = code
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if len(self._lines) > MAX_REPLY_LINES:
            raise ProtocolError("reply has too many lines")
        if sep == b"-":
            return None
        reply = Reply(code, "\n".join(self._lines))
        self._lines = []
        return reply


def command(verb: str, arg: str = "") -> bytes:
    """One command line; CR or LF inside would smuggle in another command."""
    line = f"{verb} {arg}" if arg else verb
    if "\r" in line or "\n" in line:
        raise ValueError("a command may not contain CR or LF")
    return line.encode("utf-8") + b"\r\n"


_BARE_EOL = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def data_block(message: bytes) -> bytes:
    """The message as sent after 354: CRLF line ends, leading dots doubled, and the
    terminating "." line (RFC 5321 §4.5.2)."""
    body = _BARE_EOL.sub(b"\r\n", message)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_DOT.sub(b"..", body) + b".\r\n"


def extensions(hello_reply: Reply) -> dict[str, str]:
    """EHLO/LHLO keywords (upper case) and their parameters, from the lines after the
    first (RFC 5321 §4.1.1.1)."""
    found = {}
    for line in hello_reply.message.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params
    return found

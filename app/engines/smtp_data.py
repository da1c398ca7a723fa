"""Reading an SMTP/LMTP message (the lines after DATA's 354) in blocks, not line by line.

aiosmtpd reads DATA one line at a time: a `readuntil` (and a log call, a few checks
and list appends) per line, ~40 lines for a 2 KB mail, paid once per hop, so three
times per mail in the lab's pipeline. Here every complete line already received is
taken in one step and checked with bytes methods that run in C. The rules are
aiosmtpd's own, line for line:

- lines end in CRLF only; the message ends at a line that is a lone "." (RFC 5321
  §4.1.1.4), so "\\n.\\n" inside a line ends nothing (the SMTP smuggling trick);
- a line longer than `line_length_limit` octets (CRLF included; RFC 5321 §4.5.3.1.6)
  makes the reply 500, a message over `data_size_limit` 552 (§4.5.3.1.7), whichever
  comes first; either way the rest is still read and thrown away, never held;
- a leading "." of a line is removed (dot-stuffing, §4.5.2).
"""

from __future__ import annotations

import asyncio
import re

from aiosmtpd.smtp import _DataState

END = b"\r\n.\r\n"
_STUFFED = re.compile(rb"(?:\A|(?<=\r\n))\.")


async def read_block(reader: asyncio.StreamReader, line_start: bool) -> tuple[bytes, bool]:
    """The DATA octets that have come, up to the last CRLF (or up to the end of the
    message), and whether the message ended there (its "." line is not included).

    `line_start`: the previous block ended a line. A line longer than the reader's
    limit with no CRLF yet is handed out in pieces, so memory stays bounded; such a
    piece never ends in CRLF, and the caller knows the line goes on."""
    # StreamReader's own internals, as its readuntil uses them: the buffer, waiting
    # for more data, and resuming a transport paused because the buffer was full.
    buf = reader._buffer  # type: ignore[attr-defined]
    while True:
        if reader._exception is not None:  # type: ignore[attr-defined]
            raise reader._exception  # type: ignore[attr-defined]
        if line_start and buf[:3] == b".\r\n":
            del buf[:3]
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
            return b"", True
        end = buf.find(END)
        if end >= 0:
            block = bytes(buf[: end + 2])
            del buf[: end + 5]
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
            return block, True
        last = buf.rfind(b"\r\n")
        if last >= 0:
            cut = last + 2
        elif len(buf) > reader._limit:  # type: ignore[attr-defined]
            cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)  # never split a CRLF
        else:
            cut = 0
        if cut:
            block = bytes(buf[:cut])
            del buf[:cut]
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
            return block, False
        if reader._eof:  # type: ignore[attr-defined]
            raise asyncio.IncompleteReadError(bytes(buf), None)
        await reader._wait_for_data("read_block")  # type: ignore[attr-defined]


async def read_message(
    reader: asyncio.StreamReader, size_limit: int | None, line_limit: int
) -> tuple[bytes, _DataState]:
    """The message as aiosmtpd's smtp_DATA reads it: dot-stuffing removed, or b""
    and the state that says why it is refused."""
    parts: list[bytes] = []
    state = _DataState.NOMINAL
    size = 0
    line_len = 0  # octets of the current line before this block (0: at a line start)
    while True:
        block, done = await read_block(reader, line_len == 0)
        nominal = state is _DataState.NOMINAL and not line_len
        if nominal and _plain(block, size, size_limit, line_limit):
            size += len(block)
            parts.append(block)
        else:
            state, line_len = _judge(block, state, size, size_limit, line_limit, line_len)
            size += len(block)
            if state is not _DataState.NOMINAL:
                parts.clear()  # refused: keep nothing in memory
            else:
                parts.append(block)
        if done:
            break
    if state is not _DataState.NOMINAL:
        return b"", state
    content = b"".join(parts)
    if content[:1] == b"." or b"\r\n." in content:
        content = _STUFFED.sub(b"", content)
    return content, state


def _plain(block: bytes, size: int, size_limit: int | None, line_limit: int) -> bool:
    """Whole lines, none too long, and still within the size limit: the usual block."""
    if size_limit and size + len(block) > size_limit:
        return False
    if block and not block.endswith(b"\r\n"):
        return False
    return len(block) <= line_limit or max(map(len, block.split(b"\r\n"))) + 2 <= line_limit


def _judge(
    block: bytes,
    state: _DataState,
    size: int,
    size_limit: int | None,
    line_limit: int,
    line_len: int,
) -> tuple[_DataState, int]:
    """Line by line, in aiosmtpd's order: a line the reader could not hold (longer
    than the limit before its CRLF) is too long at once; then the octets count toward
    the size limit; then a complete line longer than the limit is too long."""
    for line in _crlf_lines(block):
        whole = line.endswith(b"\r\n")
        length = line_len + len(line)
        if state is _DataState.NOMINAL and length - (2 if whole else 0) > line_limit:
            state = _DataState.TOO_LONG
        size += len(line)
        if state is _DataState.NOMINAL and size_limit and size > size_limit:
            state = _DataState.TOO_MUCH
        if state is _DataState.NOMINAL and whole and length > line_limit:
            state = _DataState.TOO_LONG
        line_len = 0 if whole else length
    return state, line_len


def _crlf_lines(block: bytes) -> list[bytes]:
    """`block` cut after each CRLF (a bare CR or LF stays inside its line)."""
    lines = block.split(b"\r\n")
    out = [line + b"\r\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out

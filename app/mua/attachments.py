"""Small, real attachment files made on the fly: a PNG image and a password ZIP."""

from __future__ import annotations

import io
import struct
import zlib

import pyzipper


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def tiny_png(size: int = 16) -> bytes:
    """A size x size RGB PNG (a map pin on a grid), a few hundred bytes."""
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type 0 for each scanline
        for x in range(size):
            d = (x - size // 2) ** 2 + (y - size // 3) ** 2
            if d < (size // 4) ** 2:
                row += bytes((220, 40, 60))
            elif (x + y) % 4 == 0:
                row += bytes((200, 210, 230))
            else:
                row += bytes((250, 250, 245))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


# What the lab attaches where a real attack would attach a program: text, never code.
STAND_IN_PROGRAM = b"MailFlow Lab stand-in for a program. It does nothing.\r\n"


def encrypted_zip(files: dict[str, str], password: str) -> bytes:
    """A ZIP with AES-256 entries (WinZip AE-2, via pyzipper): stronger than the
    legacy ZipCrypto, yet it protects nothing when the password travels the same way."""
    buf = io.BytesIO()
    with pyzipper.AESZipFile(
        buf, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(password.encode())
        for name, text in files.items():
            zf.writestr(name, text.encode("utf-8"))
    return buf.getvalue()


def open_zip(data: bytes, password: str) -> dict[str, str]:
    with pyzipper.AESZipFile(io.BytesIO(data)) as zf:
        zf.setpassword(password.encode())
        return {name: zf.read(name).decode("utf-8") for name in zf.namelist()}

"""SASL PLAIN (RFC 4616), shared by POP3's AUTH (RFC 5034) and IMAP's AUTHENTICATE
(RFC 3501 §6.2.2, SASL-IR RFC 4959): one decoder, so both protocols accept and
refuse exactly the same responses."""

from __future__ import annotations

import base64
import binascii


def b64(response: bytes | str) -> bytes | None:
    """A SASL response's octets; "=" is the empty initial response (RFC 4959 §3,
    RFC 5034 §4); None when it is not valid base64."""
    data = response.encode("ascii", "replace") if isinstance(response, str) else response
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_plain(response: bytes | str) -> tuple[str, str, str] | None:
    """authzid NUL authcid NUL passwd, or None when malformed (not base64, not UTF-8,
    not exactly three fields)."""
    raw = b64(response)
    if raw is None:
        return None
    parts = raw.split(b"\0")
    if len(parts) != 3:
        return None
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return None
    return authzid, user, password


def shown(response: bytes | str) -> str | None:
    """The decoded response for the live view (NUL shown as ␀), or None if not base64.
    The view masks the password; this is what a learner may unfold."""
    raw = b64(response)
    if raw is None:
        return None
    return raw.decode("utf-8", "replace").replace("\0", "␀")

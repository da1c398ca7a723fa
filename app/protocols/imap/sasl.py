"""SASL PLAIN (RFC 4616) for AUTHENTICATE, with or without SASL-IR (RFC 4959)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from app.protocols.imap.wire import bad

if TYPE_CHECKING:
    from app.protocols.imap.server import ImapConnection


def decode_plain(text: bytes) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def finish_plain(conn: ImapConnection, b64: bytes) -> tuple[str, str]:
    """SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd."""
    decoded = "" if b64 == b"=" else decode_plain(b64)
    if decoded is None:
        raise bad("Invalid base64 in SASL response")
    parts = decoded.split("\x00")
    if len(parts) != 3:
        raise bad("PLAIN needs authzid NUL user NUL password")
    authzid, user, password = parts
    if authzid and authzid.lower() != user.lower():
        return conn.login_failed("[AUTHORIZATIONFAILED] Cannot act as another user")
    mailboxes = conn.backend.login(user, password)
    if mailboxes is None:
        return conn.login_failed()
    return conn.logged_in(user, mailboxes)

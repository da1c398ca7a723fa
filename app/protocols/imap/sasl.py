"""AUTHENTICATE PLAIN (RFC 4616), with or without SASL-IR (RFC 4959), over the
SASL decoder shared with POP3 (app/protocols/sasl.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.protocols import sasl
from app.protocols.imap.wire import bad

if TYPE_CHECKING:
    from app.protocols.imap.server import ImapConnection


def finish_plain(conn: ImapConnection, b64: bytes) -> tuple[str, str]:
    """SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd."""
    raw = sasl.b64(b64)
    if raw is None:
        raise bad("Invalid base64 in SASL response")
    decoded = sasl.decode_plain(b64)
    if decoded is None:
        raise bad("PLAIN needs authzid NUL user NUL password")
    authzid, user, password = decoded
    if authzid and authzid.lower() != user.lower():
        return conn.login_failed("[AUTHORIZATIONFAILED] Cannot act as another user")
    mailboxes = conn.backend.login(user, password)
    if mailboxes is None:
        return conn.login_failed()
    return conn.logged_in(user, mailboxes)

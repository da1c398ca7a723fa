"""Secrets typed into the lab never leave the engines: the event itself is masked.

In the lab, people log in with their own clients and may type a real password (or the
AUTH string that carries it). Masking only the HTML is not enough: the websocket JSON,
the late joiners' backlog and anything else that reads the hub would still carry the
raw line. So LiveSink masks every event here, before the hub ever sees it.

The engines already put the shown form of a credential line in `detail["masked"]`
(e.g. "PASS ****", "a1 LOGIN bob@b.example ****"); a credential line that reached an
error path without it (a syntax error in LOGIN, a refused literal) is masked from its
key. A decoded SASL PLAIN string keeps its authorization and user names (the lesson
that Base64 is readable) but never the password.

The scenarios' own demo accounts are not masked: they are recorded by a Recorder, not
published through LiveSink, and showing their decoded AUTH is the lesson itself.
"""

from __future__ import annotations

from types import MappingProxyType

from app.events import Event

MASK = "****"
NUL = "␀"  # how the taps show a NUL byte in decoded SASL strings
# The second word of an event key that names a line which may carry a secret:
# SMTP/LMTP AUTH (and its continuation lines), POP3 PASS/APOP/AUTH, IMAP LOGIN/AUTHENTICATE.
SECRET_VERBS = frozenset({"auth", "pass", "apop", "login", "authenticate"})
# Words of such a line that are no secret: "AUTH PLAIN", "APOP bob", "a1 AUTHENTICATE PLAIN".
_KEEP = {"auth": 2, "apop": 2, "authenticate": 2, "login": 1, "pass": 1}


def carries_secret(event: Event) -> bool:
    parts = event.key.split(".")
    return event.direction == "c2s" and len(parts) > 1 and parts[1] in SECRET_VERBS


def _fallback(event: Event) -> str:
    """A credential line without a masked form: keep the command words, hide the rest."""
    words = event.text.split(" ")
    keep = _KEEP.get(event.key.split(".")[1], 1)
    if event.protocol == "IMAP":
        keep += 1  # IMAP lines start with a tag
    return event.text if len(words) <= keep else " ".join([*words[:keep], MASK])


def _hide_password(decoded: str) -> str | None:
    """authzid␀user␀password -> authzid␀user␀ (the view adds ****); else nothing."""
    parts = decoded.split(NUL)
    if len(parts) < 2:
        return None  # AUTH LOGIN lines: one value each, which may be the password
    return NUL.join(parts[:-1]) + NUL


def mask_secrets(event: Event) -> Event:
    """The event as it may be shown anywhere: credentials replaced by ****."""
    if not carries_secret(event) and "masked" not in event.detail:
        return event
    if event.key.endswith(".response"):
        shown = MASK  # a SASL continuation line is nothing but the credentials
    else:
        shown = event.detail.get("masked") or _fallback(event)
    detail = {k: v for k, v in event.detail.items() if k != "decoded"}
    detail["masked"] = shown
    decoded = event.detail.get("decoded")
    hidden = _hide_password(decoded) if decoded else None
    if hidden is not None:
        detail["decoded"] = hidden
    return event._replace(text=shown, detail=MappingProxyType(detail))

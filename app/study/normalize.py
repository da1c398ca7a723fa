"""Typed answers: forgiving about spelling, width and case; strict about meaning.

"ＰＯＰ３Ｓ", "pop3s", "POP3 over TLS" and "POP3/SSL" all mean POP3S; "９９５番" means 995.
"""

from __future__ import annotations

import re
import unicodedata

from app.study.content import PortCard

# How learners write "the secure variant of X", after normalisation.
TLS_SUFFIXES = (
    "s",
    "overtls",
    "overssl",
    "tls",
    "ssl",
    "ssltls",
    "tlsssl",
    "withtls",
    "withssl",
    "overssltls",
    "暗号化",
)
TLS_PREFIXES = ("secure", "ssl", "tls")
_PORT_WORDS = ("port", "ポート", "番ポート", "番", "tcp")


def fold(text: str) -> str:
    """NFKC (full-width → ASCII), case-folded, with every space and punctuation mark removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def _strip_words(text: str) -> str:
    changed = True
    while changed and text:
        changed = False
        for word in _PORT_WORDS:
            if text.endswith(word) and len(text) > len(word):
                text, changed = text[: -len(word)], True
            if text.startswith(word) and len(text) > len(word):
                text, changed = text[len(word) :], True
    return text


def service_names(card: PortCard) -> frozenset[str]:
    """Every folded spelling accepted for a card's service."""
    bases = {fold(n) for n in card.names}
    if not card.implicit_tls:
        return frozenset(bases)
    accepted = {fold(card.service)}
    for base in bases:
        accepted.update(base + suffix for suffix in TLS_SUFFIXES)
        accepted.update(prefix + base for prefix in TLS_PREFIXES)
    return frozenset(accepted)


def parse_port(text: str) -> int | None:
    """A typed port number, or None if the text is not one (e.g. "９９５番", "port 995")."""
    folded = _strip_words(fold(text))
    if not re.fullmatch(r"[0-9]{1,5}", folded):
        return None
    return int(folded)


def matches_service(text: str, card: PortCard) -> bool:
    folded = _strip_words(fold(text))
    # "POP3S 995": naming the right port as well is fine.
    if folded.endswith(card.id) and len(folded) > len(card.id):
        folded = _strip_words(folded[: -len(card.id)])
    return folded in service_names(card)

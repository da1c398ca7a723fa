"""What the POP3 core needs from a maildrop, and what it asks its adapter for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

# -- the backend the core talks to ------------------------------------------------


class MaildropEntry(NamedTuple):
    key: str  # stable unique id (the Maildir key); becomes the UIDL
    size: int  # octets as sent by RETR: CRLF line endings, before dot-stuffing


class MaildropInUse(Exception):
    """Raised by `POP3Backend.open` while another session holds the maildrop."""


class POP3Backend(Protocol):
    """What the core needs from a maildrop. Implementations raise OSError (or KeyError
    for a message gone) on storage errors, which the core answers with -ERR; any other
    exception is a bug and escapes to the adapter."""

    def authenticate(self, user: str, password: str) -> bool: ...

    def apop_secret(self, user: str) -> str | None:
        """The shared secret (clear password) for APOP, or None for no such user."""
        ...

    def open(self, user: str) -> list[MaildropEntry]:
        """Lock the maildrop and snapshot it; message n is element n-1. Raises
        MaildropInUse while another session holds the lock (RFC 1939 §4)."""
        ...

    def read(self, user: str, key: str) -> bytes: ...

    def delete(self, user: str, keys: list[str]) -> list[str]:
        """Remove messages for good; returns the removed files' relative paths."""
        ...


# -- storage requests (the adapter answers them off the event loop) ---------------


@dataclass(frozen=True, slots=True)
class OpenMaildrop:
    """Lock `user`'s maildrop and list it (answer: list[MaildropEntry], or raise
    MaildropInUse / OSError)."""

    user: str


@dataclass(frozen=True, slots=True)
class ReadMessage:
    """The octets of one message as stored (answer: bytes, or raise OSError/KeyError)."""

    user: str
    key: str


@dataclass(frozen=True, slots=True)
class RemoveMessages:
    """The UPDATE state: remove these for good (answer: the removed files' paths)."""

    user: str
    keys: tuple[str, ...]


StorageRequest = OpenMaildrop | ReadMessage | RemoveMessages

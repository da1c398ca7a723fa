"""What the IMAP core needs from the mail storage, as Protocols.

The core never touches files itself; the adapter hands it an `ImapBackend`
(app.engines.imap_server.ImapMailStore is the one over MailStore + Accounts). A
connection built with defer_reads=True never calls a `UserMailboxes` method itself:
it names the call in a StorageCalls output and the adapter runs it off the event
loop (one storage thread); with an in-memory backend it calls directly.
Mailbox names given to a `UserMailboxes` are already normalised ("INBOX" in
upper case, hierarchy delimiter ".").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ListedMessage(Protocol):
    """One message as listed from a folder (app.world.mailstore.StoredMessage fits)."""

    @property
    def key(self) -> str: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def subdir(self) -> str: ...  # "new" (not yet seen by any client, i.e. \Recent) or "cur"
    @property
    def internaldate(self) -> float: ...


class UserMailboxes(Protocol):
    """One logged-in user's folders. Missing mailboxes raise KeyError."""

    def list(self) -> list[str]: ...
    def exists(self, name: str) -> bool: ...
    def create(self, name: str) -> None:
        """Raises FileExistsError when the name exists: the one check that no other
        session can slip between (a separate `exists` call could be stale)."""
        ...

    def delete(self, name: str) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def subscriptions(self) -> set[str]: ...
    def set_subscribed(self, name: str, subscribed: bool) -> None: ...

    def messages(self, name: str) -> Sequence[ListedMessage]: ...
    def uidvalidity(self, name: str) -> int: ...
    def uidnext(self, name: str) -> int: ...
    def read(self, name: str, key: str) -> bytes: ...
    def set_flags(self, name: str, key: str, flags: frozenset[str]) -> str:
        """Store flags; returns the file's new relative path, e.g. "cur/123.abc:2,S"."""
        ...

    def remove(self, name: str, keys: list[str]) -> list[str]:
        """Delete messages; returns the relative paths removed."""
        ...

    def append(
        self, name: str, data: bytes, flags: frozenset[str], internaldate: float | None
    ) -> ListedMessage: ...
    def register(self, name: str, key: str, flags: frozenset[str]) -> ListedMessage:
        """A file written by the adapter (WriteMessages) as `key`: give it its UID and
        keep its keywords. Asked for through StorageCalls, so it runs in the storage
        thread, one call at a time, like every listing that hands out UIDs."""
        ...

    def copy(self, src: str, key: str, dst: str) -> ListedMessage:
        """Copy one message keeping its flags and internal date."""
        ...

    def listing(self, name: str) -> list[str]:
        """Relative paths of the files in the folder, for the on-screen mailbox state."""
        ...


class ImapBackend(Protocol):
    def login(self, user: str, password: str) -> UserMailboxes | None:
        """The user's mailboxes when the password is right, else None."""
        ...

"""Message contents a command needs, asked of the adapter instead of read in the core.

A handler that needs message bodies (FETCH of a body part, SEARCH BODY/TEXT, STATUS
SIZE) is a generator: it yields `Need(mailbox, keys)` for one batch of messages and
goes on once they are loaded. The connection answers from its cache, reads them
itself when it was built for in-memory backends, or stops and hands the adapter a
`ReadMessages` output; the adapter reads and parses them off the event loop and
resumes the command with `ImapConnection.messages_loaded`. Batches keep a session's
memory bounded whatever the client asks for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from app.protocols.imap.mime import ParsedMessage

if TYPE_CHECKING:
    from app.protocols.imap.backend import UserMailboxes

BATCH_MESSAGES = 32
BATCH_OCTETS = 8 * 1024 * 1024
# Index records are about 1 KiB each: a whole folder's worth per request keeps the
# worker-thread round trips to one per command for any folder a person has.
BATCH_SUMMARIES = 4096

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to write into a folder (APPEND), or to copy there from another
    (`source`: (mailbox, key), COPY/MOVE), with its flags and internal date."""

    data: bytes | None
    source: tuple[str, str] | None
    flags: frozenset[str]
    internaldate: float | None


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a `UserMailboxes` method, e.g. Call("rename", ("Old", "New")).
    `missing_ok`: a KeyError/FileNotFoundError (the folder or message is gone) gives
    None as its result instead of stopping the batch."""

    op: str
    args: tuple[Any, ...] = ()
    missing_ok: bool = False


def run_calls(mailboxes: UserMailboxes, calls: Sequence[Call]) -> list[Any]:
    """Run calls in order (the adapter: in its storage thread). The first error that
    is not missing_ok stops the batch and is raised to the caller."""
    results: list[Any] = []
    for call in calls:
        try:
            results.append(getattr(mailboxes, call.op)(*call.args))
        except (KeyError, FileNotFoundError):
            if not call.missing_ok:
                raise
            results.append(None)
    return results


@dataclass(frozen=True, slots=True)
class Need:
    mailbox: str
    keys: tuple[str, ...]
    text: bool = False  # SEARCH: also decode the text (body parts, header) for matching
    summaries: bool = False  # the folder index's records (summary.Summary), not the files
    store: tuple[NewMessage, ...] = ()  # write these into `mailbox` (files only, no UIDs)
    remove: tuple[str, ...] = ()  # expunge: delete these messages' files
    calls: tuple[Call, ...] = ()  # other backend calls (listing, flags, folders)


class NeedsBody(Exception):
    """Raised by a search subject's loader in the first, flags-only pass."""


def batches(items: Sequence[T], size_of: Sequence[int]) -> Iterator[list[T]]:
    """Consecutive groups of at most BATCH_MESSAGES items and about BATCH_OCTETS."""
    group: list[T] = []
    octets = 0
    for item, size in zip(items, size_of, strict=True):
        if group and (len(group) >= BATCH_MESSAGES or octets + size > BATCH_OCTETS):
            yield group
            group, octets = [], 0
        group.append(item)
        octets += size
    if group:
        yield group


def chunks(items: Sequence[T], size: int = BATCH_SUMMARIES) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def prepare(data: bytes, text: bool) -> ParsedMessage:
    """Parse a message as far as the command will use it (call this off the loop)."""
    msg = ParsedMessage(data)
    msg.mime  # noqa: B018  (parses the MIME tree now, not later on the event loop)
    if text:
        msg.folded_text  # noqa: B018
        msg.folded_header  # noqa: B018
    return msg

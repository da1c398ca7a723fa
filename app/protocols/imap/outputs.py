"""What the sans-IO core asks its adapter to do, in order (the way h11 returns events)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.protocols.imap.reads import Call, NewMessage


@dataclass(frozen=True, slots=True)
class ClientSent:
    """A complete unit the client sent (command with literals, SASL line, DONE): show it."""

    data: bytes
    key: str
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write to the client and show as one event."""

    data: bytes
    key: str


@dataclass(frozen=True, slots=True)
class MailboxNote:
    """Something the session changed on disk (maildir.flags, maildir.remove, maildir.state)."""

    text: str
    key: str


@dataclass(frozen=True, slots=True)
class MailboxChanged:
    """This session changed `mailbox` of `user`; other sessions watching it should look."""

    user: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class ReadMessages:
    """Read and parse these messages off the event loop (app.protocols.imap.reads.prepare),
    then call `messages_loaded` with what was found; the command waits until then."""

    mailbox: str
    keys: tuple[str, ...]
    text: bool = False


@dataclass(frozen=True, slots=True)
class ReadSummaries:
    """Look these messages up in the folder index off the event loop (building the
    records of any it lacks from their files), then call `summaries_loaded`.
    `calls`: backend calls to run in the same trip (in the storage thread), e.g. the
    folder listing a FETCH reply ends with; their results (None if they failed) go to
    `summaries_loaded` too."""

    mailbox: str
    keys: tuple[str, ...]
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True, slots=True)
class WriteMessages:
    """Write these message files into `mailbox` off the event loop (tmp/, fsync, rename;
    the source file read for a copy), then call `messages_written` with each one's new
    Maildir key (None where a copy's source was gone). UIDs are given afterwards by
    the backend's `register`, asked for through StorageCalls."""

    mailbox: str
    messages: tuple[NewMessage, ...]


@dataclass(frozen=True, slots=True)
class RemoveFiles:
    """Expunge: delete these messages' files off the event loop (unlink, directory
    fsync), then call `files_removed` with the relative paths removed."""

    mailbox: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StorageCalls:
    """Everything else a command asks of its `UserMailboxes`: folder listings (with UID
    bookkeeping), flag renames, CREATE/DELETE/RENAME, the subscriptions file. Run these
    calls in order off the event loop (app.protocols.imap.reads.run_calls), then call
    `storage_done` with their results; the command waits until then."""

    calls: tuple[Call, ...]


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Write everything before this, then run the TLS handshake."""


@dataclass(frozen=True, slots=True)
class Close:
    """Write everything before this, then close the connection."""


Output = (
    ClientSent
    | Send
    | MailboxNote
    | MailboxChanged
    | ReadMessages
    | ReadSummaries
    | WriteMessages
    | RemoveFiles
    | StorageCalls
    | StartTLS
    | Close
)

"""IMAP4rev1 (RFC 3501) server core, sans-IO, with the RFC 9051 parts clients use."""

from app.protocols.imap.backend import ImapBackend, ListedMessage, UserMailboxes
from app.protocols.imap.outputs import (
    ClientSent,
    Close,
    MailboxChanged,
    MailboxNote,
    Output,
    ReadMessages,
    ReadSummaries,
    RemoveFiles,
    Send,
    StartTLS,
    StorageCalls,
    WriteMessages,
)
from app.protocols.imap.reads import Call
from app.protocols.imap.server import ImapConnection
from app.protocols.imap.state import State

__all__ = [
    "Call",
    "ClientSent",
    "Close",
    "ImapBackend",
    "ImapConnection",
    "ListedMessage",
    "MailboxChanged",
    "MailboxNote",
    "Output",
    "ReadMessages",
    "ReadSummaries",
    "RemoveFiles",
    "Send",
    "StartTLS",
    "State",
    "StorageCalls",
    "UserMailboxes",
    "WriteMessages",
]

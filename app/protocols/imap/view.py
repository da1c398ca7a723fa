"""A session's picture of its selected mailbox: message sequence numbers, UIDs, flags.

Other sessions (or the MDA) change the folder underneath. `refresh` compares the
picture with the folder as listed now and yields the untagged EXPUNGE / EXISTS /
FETCH lines that bring the client up to date (RFC 3501 §7.4.1, §5.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.protocols.imap.backend import ListedMessage
from app.protocols.imap.wire import SequenceSet, bad, format_flags


@dataclass(slots=True)
class Entry:
    uid: int
    key: str
    flags: frozenset[str]
    internaldate: float
    recent: bool
    size: int = 0  # octets on disk, to size read batches (0 when the backend does not say)
    gone: bool = False  # expunged elsewhere, not yet announced to this client

    @property
    def shown_flags(self) -> frozenset[str]:
        """The flags as this session reports them: \\Recent only here (RFC 3501 §2.3.2)."""
        return self.flags | {"\\Recent"} if self.recent else self.flags


class SelectedMailbox:
    def __init__(self, name: str, readonly: bool, messages: Sequence[ListedMessage]) -> None:
        self.name = name
        self.readonly = readonly
        self.entries = [_entry(m) for m in messages]
        self.keywords = {f for e in self.entries for f in e.flags if not f.startswith("\\")}
        # Recent messages this read-write session has yet to take out of new/: it is
        # the first to see them, so no later session may (see ImapConnection.claim_recent).
        self.unclaimed: list[Entry] = [] if readonly else [e for e in self.entries if e.recent]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def max_uid(self) -> int:
        return self.entries[-1].uid if self.entries else 0

    def refresh(self, current: Sequence[ListedMessage], allow_expunge: bool) -> list[bytes]:
        now = {m.uid: m for m in current}
        lines: list[bytes] = []
        for i in range(len(self.entries) - 1, -1, -1):
            e = self.entries[i]
            if e.uid in now:
                continue
            if allow_expunge:
                lines.append(b"* %d EXPUNGE\r\n" % (i + 1))
                del self.entries[i]
            else:
                e.gone = True
        known = self.max_uid
        added = [m for m in current if m.uid > known]
        if added:
            fresh = [_entry(m) for m in added]
            self.entries.extend(fresh)
            if not self.readonly:
                self.unclaimed += [e for e in fresh if e.recent]
            lines.append(b"* %d EXISTS\r\n" % len(self.entries))
        for i, e in enumerate(self.entries, 1):
            m = now.get(e.uid)
            if m is not None and not e.gone and m.flags != e.flags:
                e.flags = m.flags
                e.key = m.key
                lines.append(b"* %d FETCH (FLAGS %s)\r\n" % (i, format_flags(e.shown_flags)))
        return lines

    def new_keywords(self) -> bool:
        """Did a keyword come into use that the client was not told of in FLAGS?"""
        now = {f for e in self.entries for f in e.flags if not f.startswith("\\")}
        if now <= self.keywords:
            return False
        self.keywords |= now
        return True

    def select(self, sset: SequenceSet, uid: bool) -> list[tuple[int, Entry]]:
        """(sequence number, entry) for the set; message numbers must exist (RFC 9051 §9)."""
        if not uid:
            if not self.entries or sset.explicit_max() > len(self.entries):
                raise bad("Invalid message sequence number")
            n = len(self.entries)
            return [(i, e) for i, e in enumerate(self.entries, 1) if sset.contains(i, n)]
        top = self.max_uid
        return [(i, e) for i, e in enumerate(self.entries, 1) if sset.contains(e.uid, top)]

    def drop(self, uids: set[int]) -> list[bytes]:
        """This session expunged these: forget them, announcing each EXPUNGE."""
        lines = []
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i].uid in uids:
                lines.append(b"* %d EXPUNGE\r\n" % (i + 1))
                del self.entries[i]
        return lines


def _entry(m: ListedMessage) -> Entry:
    size = getattr(m, "size", 0)
    return Entry(m.uid, m.key, frozenset(m.flags), m.internaldate, m.subdir == "new", size)

"""An in-memory mail world rebuilt from a recording, for the sans-IO cores to run on.

Predict mode feeds the learner's line to the real POP3 and IMAP cores. They need a
mailbox in the state the recorded session saw: the mails delivered so far (read
back from the recording: the copy a POP3 RETR or IMAP FETCH showed, else the LMTP
content plus the MDA's trace headers) and the logins that worked. Nothing here
touches a disk; every check builds a fresh mirror so no answer leaves a trace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from app.events import Event
from app.protocols.pop3 import MaildropEntry as Pop3Info
from app.protocols.pop3 import wire_size
from app.world.accounts import DEFAULT_ACCOUNTS

CRLF = "\r\n"
_QID = re.compile(r"\b([0-9A-F]{6,20}) Saved\b")
_LITERAL = re.compile(r"\{(\d+)\}\n")
FLAG_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}


def to_bytes(text: str) -> bytes:
    """Event text back to wire bytes: events show CRLF as a newline."""
    return text.replace("\n", CRLF).encode("utf-8", "surrogateescape")


# -- what the recording tells about mail and logins ------------------------------------


def logins(events: Sequence[Event]) -> set[tuple[str, str]]:
    """(user, password) pairs a server accepted in this recording."""
    found: set[tuple[str, str]] = set()
    user_by_session: dict[str, str] = {}
    for i, e in enumerate(events):
        if e.direction != "c2s":
            continue
        reply = _next_reply(events, i)
        ok = reply is not None and _is_success(reply)
        words = e.text.split(" ")
        if e.protocol == "POP3" and words[0].upper() == "USER" and len(words) > 1:
            user_by_session[e.session] = words[1]
        pair: tuple[str, str] | None = None
        if e.protocol == "POP3" and words[0].upper() == "PASS" and e.session in user_by_session:
            pair = (user_by_session[e.session], e.text[5:])
        elif e.protocol == "IMAP" and len(words) == 4 and words[1].upper() == "LOGIN":
            pair = (words[2].strip('"'), words[3].strip('"'))
        elif "decoded" in e.detail:
            parts = e.detail["decoded"].split("␀")
            if len(parts) == 3:
                pair = (parts[1], parts[2])
        if pair and ok:
            found.add(pair)
    return found


def _next_reply(events: Sequence[Event], index: int) -> Event | None:
    for e in events[index + 1 :]:
        if e.session == events[index].session and e.direction == "s2c":
            return e
    return None


def _is_success(reply: Event) -> bool:
    text = reply.text
    last = text.rsplit("\n", 1)[-1]
    if reply.protocol in ("SMTP", "LMTP"):
        return text[:1] in ("2", "3")
    if reply.protocol == "POP3":
        return text.startswith("+")
    words = last.split(" ")
    return last.startswith("+") or (len(words) > 1 and words[0] != "*" and words[1] == "OK")


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int  # the MAILDIR note: from here on the mail is in the mailbox
    user: str
    key: str  # the Maildir file name, the POP3 UIDL
    data: bytes


def deliveries(events: Sequence[Event]) -> list[Delivery]:
    out = []
    for i, e in enumerate(events):
        if e.key != "maildir.deliver" or not e.detail.get("mailbox"):
            continue
        user = e.detail["mailbox"].lower()
        key = e.text.rpartition("/")[2].partition(":")[0]
        data = _stored_copy(events, i, user) or _rebuilt(events, i, user)
        out.append(Delivery(e.seq, user, key, data))
    return out


def _session_events(events: Sequence[Event], index: int) -> list[Event]:
    return [e for e in events if e.session == events[index].session]


def _lmtp_qid(events: Sequence[Event], index: int, user: str) -> str | None:
    for e in _session_events(events, index):
        if e.seq > events[index].seq and e.direction == "s2c" and f"<{user}>" in e.text.lower():
            m = _QID.search(e.text)
            if m:
                return m.group(1)
    return None


def _stored_copy(events: Sequence[Event], index: int, user: str) -> bytes | None:
    """The exact stored bytes, when a later RETR or FETCH showed this mail in full."""
    qid = _lmtp_qid(events, index, user)
    if qid is None:
        return None
    mark = f" id {qid}\n"
    for e in events[index + 1 :]:
        if e.direction != "s2c" or mark not in e.text or e.detail.get("cut"):
            continue
        if e.protocol == "POP3" and e.text.endswith("\n."):
            body = e.text.partition("\n")[2][: -len("\n.")]
            return to_bytes(re.sub(r"(?m)^\.\.", ".", body) + "\n")
        m = _LITERAL.search(e.text)
        if e.protocol == "IMAP" and m:
            data = to_bytes(e.text[m.end() :])[: int(m.group(1))]
            if len(data) == int(m.group(1)):
                return data
    return None


def _rebuilt(events: Sequence[Event], index: int, user: str) -> bytes:
    """Return-Path, Delivered-To and the MDA's Received line on top of the LMTP content."""
    session = _session_events(events, index)
    content = next((e.text for e in session if e.key.endswith(".data.content")), "")
    sender = next((e.text for e in session if e.key.endswith(".mail")), "MAIL FROM:<>")
    sender = sender.partition("<")[2].partition(">")[0]
    helo = next((e.text.partition(" ")[2] for e in session if e.key.endswith(".lhlo")), "unknown")
    by = next((e.text[4:].split("\n")[0] for e in session if e.key.endswith(".lhlo.250")), "mda")
    qid = _lmtp_qid(events, index, user) or "0000000000"
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime())
    head = (
        f"Return-Path: <{sender}>\nDelivered-To: {user}\nReceived: from {helo} ([127.0.0.1])\n"
        f"\tby {by} (MailFlow Lab) with LMTP id {qid}\n\tfor <{user}>;\n\t{stamp}\n"
    )
    return to_bytes(head + content + "\n")


# -- the mailboxes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryMessage:
    key: str
    uid: int
    flags: frozenset[str]
    subdir: str
    internaldate: float
    data: bytes

    @property
    def relpath(self) -> str:
        if self.subdir == "new":
            return f"new/{self.key}"
        letters = "".join(sorted(FLAG_LETTERS[f] for f in self.flags if f in FLAG_LETTERS))
        return f"cur/{self.key}:2,{letters}"


@dataclass
class _Folder:
    messages: list[MemoryMessage] = field(default_factory=list)
    uidnext: int = 1
    uidvalidity: int = 1


class MemoryMailboxes:
    """One user's folders (implements app.protocols.imap.UserMailboxes)."""

    def __init__(self, uidvalidity: int = 1) -> None:
        self.folders: dict[str, _Folder] = {"INBOX": _Folder(uidvalidity=uidvalidity)}
        self.subscribed: set[str] | None = None
        self._serial = 0

    def _folder(self, name: str) -> _Folder:
        return self.folders[name]  # KeyError: the core answers NO [NONEXISTENT]

    def list(self) -> list[str]:
        return sorted(self.folders)

    def exists(self, name: str) -> bool:
        return name in self.folders

    def create(self, name: str) -> None:
        if name in self.folders:
            raise FileExistsError(name)
        self.folders[name] = _Folder()

    def delete(self, name: str) -> None:
        if name == "INBOX":
            raise PermissionError(name)
        del self.folders[name]

    def rename(self, old: str, new: str) -> None:
        self.folders[new] = self.folders.pop(old)

    def subscriptions(self) -> set[str]:
        return set(self.list()) if self.subscribed is None else set(self.subscribed)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        names = self.subscriptions()
        (names.add if subscribed else names.discard)(name)
        self.subscribed = names

    def messages(self, name: str) -> list[MemoryMessage]:
        return list(self._folder(name).messages)

    def uidvalidity(self, name: str) -> int:
        return self._folder(name).uidvalidity

    def uidnext(self, name: str) -> int:
        return self._folder(name).uidnext

    def read(self, name: str, key: str) -> bytes:
        return self._find(name, key)[1].data

    def set_flags(self, name: str, key: str, flags: frozenset[str]) -> str:
        folder = self._folder(name)
        i, msg = self._find(name, key)
        folder.messages[i] = replace(msg, flags=frozenset(flags), subdir="cur")
        return folder.messages[i].relpath

    def remove(self, name: str, keys: list[str]) -> list[str]:
        folder = self._folder(name)
        gone = [m for m in folder.messages if m.key in keys]
        folder.messages = [m for m in folder.messages if m.key not in keys]
        return [m.relpath for m in gone]

    def append(
        self,
        name: str,
        data: bytes,
        flags: frozenset[str],
        internaldate: float | None,
        key: str | None = None,
    ) -> MemoryMessage:
        folder = self._folder(name)
        self._serial += 1
        msg = MemoryMessage(
            key or f"mirror{self._serial}",
            folder.uidnext,
            frozenset(flags),
            "new" if not flags else "cur",
            internaldate if internaldate is not None else time.time(),
            data,
        )
        folder.messages.append(msg)
        folder.uidnext += 1
        return msg

    def copy(self, src: str, key: str, dst: str) -> MemoryMessage:
        msg = self._find(src, key)[1]
        return self.append(dst, msg.data, msg.flags, msg.internaldate)

    def listing(self, name: str) -> list[str]:
        return sorted(m.relpath for m in self._folder(name).messages)

    def _find(self, name: str, key: str) -> tuple[int, MemoryMessage]:
        for i, msg in enumerate(self._folder(name).messages):
            if msg.key == key:
                return i, msg
        raise KeyError(key)


class MirrorWorld:
    """Every account's mailboxes plus the passwords the recording proved; both the
    POP3 backend (INBOX only) and the IMAP backend of the cores."""

    def __init__(self, accepted: Iterable[tuple[str, str]] = (), uidvalidity: int = 1) -> None:
        self.uidvalidity = uidvalidity  # the real Maildir's, so SELECT replies match
        self.passwords = {u.lower(): {p} for u, p in DEFAULT_ACCOUNTS.items()}
        for user, password in accepted:
            self.passwords.setdefault(user.lower(), set()).add(password)
        self.users: dict[str, MemoryMailboxes] = {}

    def mailboxes(self, user: str) -> MemoryMailboxes:
        if user.lower() not in self.users:
            self.users[user.lower()] = MemoryMailboxes(self.uidvalidity)
        return self.users[user.lower()]

    def deliver(self, delivery: Delivery) -> None:
        self.mailboxes(delivery.user).append(
            "INBOX", delivery.data, frozenset(), None, delivery.key
        )

    # -- POP3Backend ------------------------------------------------------------
    def authenticate(self, user: str, password: str) -> bool:
        return password in self.passwords.get(user.lower(), ())

    def apop_secret(self, user: str) -> str | None:
        known = sorted(self.passwords.get(user.lower(), ()))
        return known[0] if known else None

    def open(self, user: str) -> list[Pop3Info]:
        box = self.mailboxes(user)
        for m in box.messages("INBOX"):  # seen by a client: out of new/, as the real server
            if m.subdir == "new":
                box.set_flags("INBOX", m.key, m.flags)
        return [Pop3Info(m.key, wire_size(m.data)) for m in box.messages("INBOX")]

    def read(self, user: str, key: str) -> bytes:
        return self.mailboxes(user).read("INBOX", key)

    def delete(self, user: str, keys: list[str]) -> list[str]:
        return self.mailboxes(user).remove("INBOX", keys)

    # -- ImapBackend -------------------------------------------------------------
    def login(self, user: str, password: str) -> MemoryMailboxes | None:
        return self.mailboxes(user) if self.authenticate(user, password) else None

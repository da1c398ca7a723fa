"""The sans-IO IMAP core: bytes in, outputs out, against an in-memory backend."""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.protocols.imap import (
    ClientSent,
    Close,
    ImapConnection,
    MailboxChanged,
    MailboxNote,
    Output,
    Send,
    StartTLS,
    StorageCalls,
)
from app.protocols.imap.reads import run_calls

SIMPLE = (
    b"From: Alice <alice@a.example>\r\nTo: Bob <bob@b.example>\r\nSubject: Hello\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@a.example>\r\n\r\nHi Bob\r\n"
)
MULTIPART = (
    b"From: carol@a.example\r\nTo: bob@b.example\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n"
    b"--XX\r\nContent-Type: application/pdf; name=a.pdf\r\n"
    b"Content-Disposition: attachment; filename=a.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\n"
)


# -- an in-memory backend implementing the UserMailboxes protocol ------------------------
@dataclass
class Msg:
    key: str
    uid: int
    flags: frozenset[str]
    internaldate: float
    data: bytes
    subdir: str = "new"


@dataclass
class MemMailboxes:
    boxes: dict[str, list[Msg]] = field(
        default_factory=lambda: {"INBOX": [], "Sent": [], "Trash": []}
    )
    next_uid: dict[str, int] = field(default_factory=dict)
    subs: set[str] = field(default_factory=lambda: {"INBOX", "Sent", "Trash"})
    counter: int = 0

    def list(self) -> list[str]:
        return ["INBOX", *sorted(n for n in self.boxes if n != "INBOX")]

    def exists(self, name: str) -> bool:
        return name in self.boxes

    def create(self, name: str) -> None:
        if name in self.boxes:
            raise FileExistsError(name)
        self.boxes[name] = []

    def delete(self, name: str) -> None:
        del self.boxes[name]

    def rename(self, old: str, new: str) -> None:
        self.boxes[new] = self.boxes.pop(old)

    def subscriptions(self) -> set[str]:
        return set(self.subs)

    def set_subscribed(self, name: str, subscribed: bool) -> None:
        (self.subs.add if subscribed else self.subs.discard)(name)

    def messages(self, name: str) -> list[Msg]:
        return list(self.boxes[name])

    def uidvalidity(self, name: str) -> int:
        return 1000 + len(name)

    def uidnext(self, name: str) -> int:
        return self.next_uid.get(name, 1)

    def _find(self, name: str, key: str) -> Msg:
        for m in self.boxes[name]:
            if m.key == key:
                return m
        raise KeyError(key)

    def read(self, name: str, key: str) -> bytes:
        return self._find(name, key).data

    def set_flags(self, name: str, key: str, flags: frozenset[str]) -> str:
        m = self._find(name, key)
        m.flags, m.subdir = frozenset(flags), "cur"
        letters = "".join(
            sorted(
                {
                    "\\Seen": "S",
                    "\\Deleted": "T",
                    "\\Flagged": "F",
                    "\\Answered": "R",
                    "\\Draft": "D",
                }[f]
                for f in flags
                if f.startswith("\\")  # keywords are not part of the file name
            )
        )
        return f"cur/{key}:2,{letters}"

    def remove(self, name: str, keys: list[str]) -> list[str]:
        gone = [m for m in self.boxes[name] if m.key in keys]
        self.boxes[name] = [m for m in self.boxes[name] if m.key not in keys]
        return [f"cur/{m.key}" for m in gone]

    def append(
        self, name: str, data: bytes, flags: frozenset[str], internaldate: float | None
    ) -> Msg:
        uid = self.next_uid.get(name, 1)
        self.next_uid[name] = uid + 1
        self.counter += 1
        m = Msg(f"k{self.counter}", uid, frozenset(flags), internaldate or time.time(), data)
        self.boxes[name].append(m)
        return m

    def copy(self, src: str, key: str, dst: str) -> Msg:
        m = self._find(src, key)
        return self.append(dst, m.data, m.flags, m.internaldate)

    def listing(self, name: str) -> list[str]:
        return [f"{m.subdir}/{m.key}" for m in self.boxes[name]]


class MemBackend:
    def __init__(self) -> None:
        self.bob = MemMailboxes()

    def login(self, user: str, password: str) -> MemMailboxes | None:
        return self.bob if (user.lower(), password) == ("bob@b.example", "bob-pass") else None


# -- helpers ---------------------------------------------------------------------------
def feed(conn: ImapConnection, data: bytes) -> list[Output]:
    return conn.receive_data(data)


def answered(
    conn: ImapConnection, outputs: list[Output], log: list[StorageCalls] | None = None
) -> list[Output]:
    """Play the adapter for StorageCalls: run them on the in-memory backend and feed
    the answers back until the core asks for something else (or nothing)."""
    done: list[Output] = []
    while outputs and isinstance(outputs[-1], StorageCalls):
        request = outputs[-1]
        done += outputs[:-1]
        if log is not None:
            log.append(request)
        try:
            results = run_calls(conn.user_mailboxes(), request.calls)
        except (KeyError, OSError) as exc:
            outputs = conn.storage_done([], exc)
        else:
            outputs = conn.storage_done(results)
    return done + outputs


def sent(outputs: list[Output]) -> bytes:
    return b"".join(o.data for o in outputs if isinstance(o, Send))


def keys(outputs: list[Output]) -> list[str]:
    return [o.key for o in outputs if isinstance(o, (Send, ClientSent, MailboxNote))]


def secure(backend: MemBackend | None = None) -> ImapConnection:
    """A connection inside TLS (after STARTTLS or on 993): passwords may be sent."""
    return ImapConnection(backend or MemBackend(), tls_active=True)


def logged_in(backend: MemBackend | None = None, select: str | None = "INBOX") -> ImapConnection:
    conn = secure(backend)
    conn.greeting()
    assert b"OK" in sent(feed(conn, b"a LOGIN bob@b.example bob-pass\r\n"))
    if select:
        assert b"a OK" in sent(feed(conn, f"a SELECT {select}\r\n".encode()))
    return conn


def with_mail(*messages: bytes) -> MemBackend:
    backend = MemBackend()
    for data in messages:
        backend.bob.append("INBOX", data, frozenset(), 1704103200.0)
    return backend


# -- greeting, capabilities, states ------------------------------------------------------------
def test_greeting_and_capabilities_follow_tls_and_login() -> None:
    conn = ImapConnection(MemBackend(), hostname="mx.b.example")
    (greet,) = conn.greeting()
    assert isinstance(greet, Send) and greet.key == "imap.greeting"
    assert greet.data.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    # Before TLS: no password mechanism, LOGINDISABLED instead (RFC 9051 §6.2.3).
    assert b"STARTTLS" in greet.data and b"LOGINDISABLED" in greet.data
    assert b"AUTH=PLAIN" not in greet.data and b"mx.b.example" in greet.data
    tls = secure()
    greet_tls = sent(tls.greeting())
    assert b"STARTTLS" not in greet_tls and b"AUTH=PLAIN" in greet_tls
    assert b"LOGINDISABLED" not in greet_tls
    out = feed(tls, b"a LOGIN bob@b.example bob-pass\r\nb CAPABILITY\r\n")
    caps = sent(out).split(b"\r\n")[1]
    assert caps.startswith(b"* CAPABILITY IMAP4rev1") and b"AUTH=PLAIN" not in caps


def test_every_command_gives_one_client_event_then_one_response_event() -> None:
    conn = ImapConnection(MemBackend())
    out = feed(conn, b"a1 NOOP\r\na2 CAPABILITY\r\n")
    assert [type(o) for o in out] == [ClientSent, Send, ClientSent, Send]
    assert keys(out) == ["imap.noop", "imap.noop.ok", "imap.capability", "imap.capability.ok"]
    assert out[0].data == b"a1 NOOP\r\n"


def test_wrong_state_unknown_command_and_garbage_get_bad() -> None:
    conn = ImapConnection(MemBackend())
    out = feed(conn, b"a FETCH 1 FLAGS\r\n")
    assert sent(out) == b"a BAD Command not valid in this state: log in first\r\n"
    assert keys(out) == ["imap.fetch", "imap.fetch.bad"]
    out = feed(conn, b"b FROBNICATE\r\n")
    assert keys(out) == ["imap.unknown", "imap.unknown.bad"]
    assert sent(out).startswith(b"b BAD Unknown command")
    out = feed(conn, b"\x00\xff\x01garbage\r\n")
    assert sent(out).startswith(b"* BAD ") and keys(out)[1] == "imap.unknown.bad"
    out = feed(conn, b"c LOGIN bob\x00 x\r\n")
    assert sent(out).startswith(b"c BAD Syntax error")
    conn = logged_in(select=None)
    assert b"select a mailbox first" in sent(feed(conn, b"d FETCH 1 FLAGS\r\n"))
    assert b"already authenticated" in sent(feed(conn, b"e LOGIN x y\r\n"))


def test_login_failures_end_the_session_after_three() -> None:
    conn = secure()
    out = feed(conn, b"a LOGIN bob@b.example wrong\r\n")
    assert sent(out) == b"a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    assert out[0].detail == {"masked": "a LOGIN bob@b.example ****"}  # type: ignore[union-attr]
    feed(conn, b"b LOGIN bob@b.example wrong\r\n")
    out = feed(conn, b'c LOGIN "bob@b.example" "nope"\r\n')
    assert keys(out) == ["imap.login", "imap.login.no", "imap.bye"]
    assert isinstance(out[-1], Close) and conn.closed
    assert feed(conn, b"d NOOP\r\n") == []


def test_authenticate_plain_with_and_without_initial_response() -> None:
    blob = base64.b64encode(b"\x00bob@b.example\x00bob-pass")
    conn = secure()
    out = feed(conn, b"a AUTHENTICATE PLAIN " + blob + b"\r\n")
    assert out[0].detail["decoded"] == "␀bob@b.example␀bob-pass"  # type: ignore[union-attr]
    assert out[0].detail["masked"] == "a AUTHENTICATE PLAIN ****"  # type: ignore[union-attr]
    assert sent(out).startswith(b"a OK [CAPABILITY")
    conn = secure()
    out = feed(conn, b"a AUTHENTICATE PLAIN\r\n")
    assert keys(out) == ["imap.authenticate", "imap.continue"] and sent(out) == b"+ \r\n"
    out = feed(conn, blob + b"\r\n")
    assert keys(out) == ["imap.auth.response", "imap.authenticate.ok"]
    assert out[0].detail["decoded"] == "␀bob@b.example␀bob-pass"  # type: ignore[union-attr]
    conn = secure()
    feed(conn, b"a AUTHENTICATE PLAIN\r\n")
    assert sent(feed(conn, b"*\r\n")) == b"a BAD Authentication cancelled\r\n"
    assert b"NO" in sent(feed(conn, b"b AUTHENTICATE CRAM-MD5\r\n"))


def test_no_password_before_tls_unless_configured() -> None:
    conn = ImapConnection(MemBackend())
    conn.greeting()
    out = feed(conn, b"a LOGIN bob@b.example bob-pass\r\n")
    assert sent(out) == (
        b"a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
        b"connections; use STARTTLS first\r\n"
    )
    assert keys(out) == ["imap.login", "imap.login.privacyrequired"]
    blob = base64.b64encode(b"\x00bob@b.example\x00bob-pass")
    for line in (b"b AUTHENTICATE PLAIN " + blob, b"c AUTHENTICATE PLAIN"):
        out = feed(conn, line + b"\r\n")  # refused before any credentials are asked for
        assert sent(out).startswith(line[:2] + b"NO [PRIVACYREQUIRED]")
        assert keys(out)[-1] == "imap.authenticate.privacyrequired"
    # Never checked, so never counted as failures: the session goes on and logs in after TLS.
    assert conn.login_failures == 0 and not conn.closed
    assert isinstance(feed(conn, b"d STARTTLS\r\n")[-1], StartTLS)
    assert b"AUTH=PLAIN" in sent(feed(conn, b"e CAPABILITY\r\n"))
    assert sent(feed(conn, b"f LOGIN bob@b.example bob-pass\r\n")).startswith(b"f OK")
    # A server configured for it (a scenario showing the risk) takes the password in clear.
    clear = ImapConnection(MemBackend(), cleartext_login=True)
    assert b"AUTH=PLAIN" in sent(clear.greeting())
    assert sent(feed(clear, b"a LOGIN bob@b.example bob-pass\r\n")).startswith(b"a OK")


def test_starttls_drops_pipelined_plaintext() -> None:
    conn = ImapConnection(MemBackend())
    out = feed(conn, b"a STARTTLS\r\nb LOGIN bob@b.example bob-pass\r\n")
    assert sent(out) == b"a OK Begin TLS negotiation now\r\n"
    assert isinstance(out[-1], StartTLS) and conn.tls_active
    assert b"STARTTLS" not in sent(feed(conn, b"c CAPABILITY\r\n"))
    assert b"c BAD" in sent(feed(conn, b"c STARTTLS\r\n"))


def test_line_too_long_is_refused_and_serving_goes_on() -> None:
    conn = ImapConnection(MemBackend())
    out = feed(conn, b"a NOOP " + b"x" * 66000)
    assert out == []
    out = feed(conn, b"y" * 5000 + b"\r\nb NOOP\r\n")
    assert sent(out).startswith(b"a BAD Command line too long")
    assert sent(out).endswith(b"b OK NOOP completed\r\n")


def test_literals_sync_nonsync_and_too_big() -> None:
    conn = logged_in(select=None)
    out = feed(conn, b"a LOGIN {3}\r\n")
    assert b"already authenticated" in sent(out)  # refused before the literal is sent
    out = feed(conn, b"b APPEND INBOX (\\Seen) {%d}\r\n" % len(SIMPLE))
    assert sent(out) == b"+ Ready for literal\r\n" and keys(out) == ["imap.continue"]
    out = feed(conn, SIMPLE + b"\r\n")
    assert out[0].data.startswith(b"b APPEND INBOX") and SIMPLE in out[0].data  # type: ignore[union-attr]
    assert re.match(rb"b OK \[APPENDUID \d+ 1\] APPEND completed", sent(out))
    out = feed(conn, b"c APPEND Sent {%d+}\r\n" % len(SIMPLE) + SIMPLE + b"\r\n")
    assert b"+ " not in sent(out) and b"c OK [APPENDUID" in sent(out)
    out = feed(conn, b"d APPEND INBOX {99999999}\r\n")
    assert sent(out).startswith(b"d NO [TOOBIG]") and keys(out)[1] == "imap.append.no"
    out = feed(conn, b"e APPEND INBOX {20000000+}\r\n" + b"z" * 20000000 + b"\r\nf NOOP\r\n")
    assert sent(out).startswith(b"e NO [TOOBIG]") and sent(out).endswith(b"f OK NOOP completed\r\n")
    assert b"[TRYCREATE]" in sent(feed(conn, b"g APPEND Nope {1+}\r\nx\r\n"))


def test_select_and_examine() -> None:
    conn = logged_in(with_mail(SIMPLE, SIMPLE), select=None)
    out = sent(feed(conn, b"a SELECT inbox\r\n"))
    assert b"* 2 EXISTS\r\n" in out and b"* 2 RECENT\r\n" in out
    assert b"* OK [UNSEEN 1]" in out and b"* OK [UIDVALIDITY 1005]" in out
    assert b"* OK [UIDNEXT 3]" in out and out.endswith(b"a OK [READ-WRITE] SELECT completed\r\n")
    out = sent(feed(conn, b"b EXAMINE INBOX\r\nc STORE 1 +FLAGS (\\Seen)\r\nd FETCH 1 BODY[]\r\n"))
    assert b"[PERMANENTFLAGS ()]" in out and b"b OK [READ-ONLY]" in out
    assert b"c NO [READ-ONLY]" in out and b"\\Seen" not in out.split(b"d OK")[0].split(b"c NO")[1]
    assert b"a NO [NONEXISTENT]" in sent(feed(conn, b"a SELECT Nope\r\n"))
    assert conn.selected is None


def test_fetch_body_sets_seen_and_peek_does_not() -> None:
    backend = with_mail(SIMPLE, SIMPLE)
    conn = logged_in(backend)
    out = feed(conn, b"a FETCH 1 BODY.PEEK[]\r\n")
    assert b"BODY[] {%d}\r\n" % len(SIMPLE) in sent(out) and b"FLAGS" not in sent(out)
    out = feed(conn, b"b FETCH 2 (RFC822)\r\n")
    # \Recent too: this session was the first to see the message (RFC 3501 §2.3.2).
    assert b"RFC822 {" in sent(out) and b"FLAGS (\\Seen \\Recent)" in sent(out)
    notes = [o for o in out if isinstance(o, MailboxNote)]
    assert [(n.key, n.text) for n in notes] == [("maildir.flags", "cur/k2:2,S")]
    assert any(isinstance(o, MailboxChanged) for o in out)
    assert keys(out)[:2] == ["imap.fetch", "imap.fetch.ok"]
    assert backend.bob.boxes["INBOX"][1].flags == {"\\Seen"}
    assert backend.bob.boxes["INBOX"][0].flags == frozenset()


def test_fetch_items_and_sections() -> None:
    conn = logged_in(with_mail(SIMPLE, MULTIPART))
    out = sent(feed(conn, b"a FETCH 1 (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)\r\n"))
    assert b'UID 1 FLAGS (\\Recent) RFC822.SIZE %d INTERNALDATE "' % len(SIMPLE) in out
    assert (
        b'ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "Hello" (("Alice" NIL "alice" "a.example"))'
        in out
    )
    assert b'(("Bob" NIL "bob" "b.example")) NIL NIL NIL "<1@a.example>")' in out
    out = sent(feed(conn, b"b FETCH 2 BODYSTRUCTURE\r\n"))
    assert b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 14 1 NIL NIL NIL NIL)' in out
    assert b'("APPLICATION" "PDF" ("NAME" "a.pdf") NIL NIL "BASE64" 8 NIL' in out
    assert b'("ATTACHMENT" ("FILENAME" "a.pdf"))' in out and b' "MIXED" ("BOUNDARY" "XX")' in out
    out = sent(feed(conn, b"c FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[TEXT]<0.8>)\r\n"))
    assert b"BODY[1] {14}\r\nsee attachment " in out
    assert b"BODY[2.MIME] {" in out and b"Content-Disposition: attachment" in out
    assert b"BODY[TEXT]<0> {8}\r\npreamble" in out
    out = sent(feed(conn, b"d FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT to)]\r\n"))
    fields = b"To: Bob <bob@b.example>\r\nSubject: Hello\r\n\r\n"
    assert b"BODY[HEADER.FIELDS (SUBJECT to)] {43}\r\n" + fields + b")" in out
    out = sent(feed(conn, b"e FETCH 1:* FAST\r\nf FETCH 1 BODY\r\ng FETCH 1 RFC822.HEADER\r\n"))
    assert b"* 2 FETCH (FLAGS (\\Recent) INTERNALDATE" in out and b'BODY ("TEXT" "PLAIN"' in out
    assert b"RFC822.HEADER {" in out
    assert b"h BAD" in sent(feed(conn, b"h FETCH 1 BODY[FOO]\r\n"))
    assert b"i BAD Invalid message sequence number" in sent(feed(conn, b"i FETCH 9 FLAGS\r\n"))
    out = sent(feed(conn, b"j UID FETCH 2:* FLAGS\r\n"))
    assert out.startswith(b"* 2 FETCH (UID 2 FLAGS (\\Recent))")
    out = sent(feed(conn, b"k UID FETCH 100:* FLAGS\r\n"))
    assert out.startswith(b"* 2 FETCH (UID 2 FLAGS (\\Recent))")  # n:* always includes the last


def test_nested_message_eight_bit_headers_and_bare_lf() -> None:
    inner = b"From: x@y.example\r\nSubject: inner\r\n\r\nbody\r\n"
    nested = (
        b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nouter\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--B--\r\n"
    )
    eight_bit = "From: Zoë <z@a.example>\nSubject: Grüße\n\nHallo\n".encode()  # LF only
    conn = logged_in(with_mail(nested, eight_bit))
    out = sent(feed(conn, b"a FETCH 1 (BODYSTRUCTURE BODY.PEEK[2.HEADER] BODY.PEEK[2.1])\r\n"))
    assert (
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 43 (NIL "inner" ((NIL NIL "x" "y.example"))' in out
    )
    assert b"BODY[2.HEADER] {37}\r\nFrom: x@y.example\r\nSubject: inner\r\n\r\n" in out
    assert b"BODY[2.1] {6}\r\nbody\r\n" in out
    out = sent(feed(conn, b"b FETCH 2 (RFC822.SIZE ENVELOPE BODY.PEEK[])\r\n"))
    crlf = eight_bit.replace(b"\n", b"\r\n")
    assert b"RFC822.SIZE %d " % len(crlf) in out and b"BODY[] {%d}\r\n" % len(crlf) + crlf in out
    assert b"ENVELOPE (NIL {7}\r\n" + "Grüße".encode() + b" (({4}\r\n" + "Zoë".encode() in out
    query = "grüß".encode()
    out = sent(
        feed(conn, b"c SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n" % len(query) + query + b"\r\n")
    )
    assert out.startswith(b"* SEARCH 2\r\n")


def test_store_variants() -> None:
    conn = logged_in(with_mail(SIMPLE, SIMPLE))
    out = feed(conn, b"a STORE 1:2 +FLAGS (\\Seen \\Flagged)\r\n")
    assert b"* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\n* 2 FETCH" in sent(out)
    assert [o.text for o in out if isinstance(o, MailboxNote)] == ["cur/k1:2,FS", "cur/k2:2,FS"]
    out = sent(feed(conn, b"b STORE 1 -FLAGS.SILENT \\Flagged\r\n"))
    assert out == b"b OK STORE completed\r\n"
    out = sent(feed(conn, b"c UID STORE 2 FLAGS (\\Answered)\r\n"))
    assert out.startswith(b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Recent))")
    assert b"d BAD" in sent(feed(conn, b"d STORE 1 +FLAGS (\\Bogus)\r\n"))
    assert b"e BAD" in sent(feed(conn, b"e STORE 1 XFLAGS (\\Seen)\r\n"))


def test_search_keys() -> None:
    backend = with_mail(SIMPLE, MULTIPART, SIMPLE)
    backend.bob.boxes["INBOX"][2].flags = frozenset({"\\Seen", "\\Flagged"})
    conn = logged_in(backend)

    def search(q: bytes) -> bytes:
        out = sent(feed(conn, b"s SEARCH " + q + b"\r\n"))
        return out.split(b"\r\n")[0]

    assert search(b"ALL") == b"* SEARCH 1 2 3"
    assert search(b"UNSEEN") == b"* SEARCH 1 2"
    assert search(b"SEEN FLAGGED") == b"* SEARCH 3"
    assert search(b"FROM carol") == b"* SEARCH 2"
    assert search('SUBJECT "café"'.encode()) == b"* SEARCH 2"
    assert search(b"BODY attachment") == b"* SEARCH 2"
    assert search(b"TEXT alice") == b"* SEARCH 1 3"
    assert search(b"NOT FROM alice") == b"* SEARCH 2"
    assert search(b"OR FLAGGED FROM carol") == b"* SEARCH 2 3"
    assert search(b"UID 2:3 2,3") == b"* SEARCH 2 3"
    assert search(b"SINCE 1-Jan-2024 BEFORE 1-Jan-2099") == b"* SEARCH 1 2 3"
    assert search(b"BEFORE 1-Jan-2000") == b"* SEARCH"
    assert search(b"SENTON 1-Jan-2024") == b"* SEARCH 1 3"
    assert search(b"CHARSET UTF-8 (UNDELETED SMALLER 300)") == b"* SEARCH 1 3"
    assert search(b"DELETED") == b"* SEARCH"
    assert search(b"LARGER 300") == b"* SEARCH 2"
    assert search(b"HEADER Message-ID 1@a") == b"* SEARCH 1 3"
    out = sent(feed(conn, b"u UID SEARCH FROM carol\r\n"))
    assert out.startswith(b"* SEARCH 2\r\nu OK")
    assert b"NO [BADCHARSET" in sent(feed(conn, b"v SEARCH CHARSET KOI8 ALL\r\n"))
    assert b"w BAD Unknown search key" in sent(feed(conn, b"w SEARCH FOO\r\n"))


def test_expunge_close_and_notes() -> None:
    backend = with_mail(SIMPLE, SIMPLE, SIMPLE)
    conn = logged_in(backend)
    feed(conn, b"a STORE 1,3 +FLAGS.SILENT (\\Deleted)\r\n")
    out = feed(conn, b"b EXPUNGE\r\n")
    assert sent(out) == b"* 3 EXPUNGE\r\n* 1 EXPUNGE\r\nb OK EXPUNGE completed\r\n"
    assert [(o.key, o.text) for o in out if isinstance(o, MailboxNote)] == [
        ("maildir.remove", "removed cur/k1"),
        ("maildir.remove", "removed cur/k3"),
    ]
    assert [m.key for m in backend.bob.boxes["INBOX"]] == ["k2"]
    assert b"* 2 EXISTS" in sent(feed(conn, b"c APPEND INBOX {3+}\r\nx\r\n\r\n"))
    feed(conn, b"e STORE 1:2 +FLAGS (\\Deleted)\r\n")
    assert sent(feed(conn, b"f UID EXPUNGE 4\r\n")).startswith(b"* 2 EXPUNGE\r\nf OK")
    out = feed(conn, b"g CLOSE\r\n")
    assert sent(out) == b"g OK CLOSE completed\r\n" and backend.bob.boxes["INBOX"] == []
    assert keys(out)[-1] == "maildir.remove" and conn.selected is None


def test_copy_and_move_report_copyuid() -> None:
    backend = with_mail(SIMPLE, SIMPLE)
    conn = logged_in(backend)
    out = sent(feed(conn, b"a COPY 1:2 Trash\r\n"))
    assert out == b"a OK [COPYUID 1005 1:2 1:2] COPY completed\r\n"
    out = sent(feed(conn, b"b UID MOVE 2 Sent\r\n"))
    assert out == b"* OK [COPYUID 1004 2 1] Moved\r\n* 2 EXPUNGE\r\nb OK UID MOVE completed\r\n"
    assert len(backend.bob.boxes["Sent"]) == 1 and len(backend.bob.boxes["INBOX"]) == 1
    assert b"c NO [TRYCREATE]" in sent(feed(conn, b"c COPY 1 Nope\r\n"))


def test_mailbox_management() -> None:
    conn = logged_in(select=None)
    assert b'* NAMESPACE (("" ".")) NIL NIL' in sent(feed(conn, b"a NAMESPACE\r\n"))
    assert b'* ID ("name" "MailFlow Lab"' in sent(feed(conn, b"a ID NIL\r\n"))
    assert b"* ENABLED\r\n" in sent(feed(conn, b"a ENABLE CONDSTORE\r\n"))
    assert b"a OK" in sent(feed(conn, b'a CREATE "Work.2024"\r\n'))
    assert b"[ALREADYEXISTS]" in sent(feed(conn, b"a CREATE Work.2024\r\n"))
    assert b"a NO [CANNOT]" in sent(feed(conn, b'a CREATE "../evil"\r\n'))
    out = sent(feed(conn, b'a LIST "" *\r\n'))
    assert b'* LIST (\\HasNoChildren) "." INBOX\r\n' in out
    assert b'* LIST (\\HasNoChildren \\Sent) "." Sent\r\n' in out
    assert b'* LIST (\\HasNoChildren) "." Work.2024\r\n' in out
    out = sent(feed(conn, b'a LIST "" %\r\n'))
    assert b'* LIST (\\Noselect \\HasChildren) "." Work\r\n' in out and b"Work.2024" not in out
    assert sent(feed(conn, b'a LIST "" ""\r\n')).startswith(b'* LIST (\\Noselect) "." ""')
    assert b"Trash" not in sent(feed(conn, b'a LIST "" inb*\r\n'))
    assert b'* LIST (\\HasNoChildren) "." INBOX' in sent(feed(conn, b'a LIST "" inb*\r\n'))
    feed(conn, b"a UNSUBSCRIBE Trash\r\n")
    out = sent(feed(conn, b'a LSUB "" *\r\n'))
    assert b"Sent" in out and b"Trash" not in out
    assert b"a OK" in sent(feed(conn, b"a RENAME Work.2024 Archive\r\n"))
    out = sent(feed(conn, b"a STATUS Archive (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)\r\n"))
    assert b"* STATUS Archive (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 1007 UNSEEN 0 RECENT 0)" in out
    assert b"a OK" in sent(feed(conn, b"a DELETE Archive\r\n"))
    assert b"a NO" in sent(feed(conn, b"a DELETE INBOX\r\n"))
    assert b"a NO [NONEXISTENT]" in sent(feed(conn, b"a STATUS Archive (MESSAGES)\r\n"))


class StaleExists(MemMailboxes):
    """What one session sees when another creates the same name between its look and
    its create: the look says "not there", the create finds it there."""

    def exists(self, name: str) -> bool:
        return False


def test_a_create_that_loses_the_race_is_alreadyexists_not_a_server_bug() -> None:
    backend = MemBackend()
    backend.bob = StaleExists()
    conn = logged_in(backend, select=None)
    assert b"a OK" in sent(feed(conn, b"a CREATE Projects\r\n"))
    assert sent(feed(conn, b"b CREATE Projects\r\n")) == (
        b"b NO [ALREADYEXISTS] Mailbox already exists\r\n"
    )
    assert b"c OK" in sent(feed(conn, b"c NOOP\r\n"))  # the session goes on


def test_changes_by_another_session_are_reported_when_allowed() -> None:
    backend = with_mail(SIMPLE, SIMPLE)
    one, two = logged_in(backend), logged_in(backend)
    feed(two, b"a STORE 1 +FLAGS (\\Seen)\r\n")
    assert b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n" in sent(feed(one, b"b NOOP\r\n"))
    backend.bob.append("INBOX", SIMPLE, frozenset(), None)
    assert b"* 3 EXISTS\r\n" in sent(feed(one, b"c NOOP\r\n"))
    feed(two, b"d STORE 2 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n")
    out = sent(feed(one, b"f FETCH 1 FLAGS\r\n"))
    assert b"EXPUNGE" not in out  # never during FETCH (RFC 3501 §7.4.1)
    assert sent(feed(one, b"g NOOP\r\n")) == b"* 2 EXPUNGE\r\ng OK NOOP completed\r\n"


def test_idle_pushes_and_done() -> None:
    backend = with_mail(SIMPLE)
    conn, other = logged_in(backend), logged_in(backend)
    out = feed(conn, b"i IDLE\r\n")
    assert keys(out) == ["imap.idle", "imap.continue"] and conn.idling
    assert conn.poll() == []
    backend.bob.append("INBOX", SIMPLE, frozenset(), None)
    stored = feed(other, b"a STORE 1 +FLAGS (\\Flagged)\r\n")
    pushes = conn.poll()
    assert [(p.key, p.data) for p in pushes if isinstance(p, Send)] == [
        ("imap.push.exists", b"* 2 EXISTS\r\n"),
        ("imap.push.fetch", b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"),
    ]
    # The other session learned of message 2 first (in its STORE reply): it took it
    # out of new/, so it is \Recent there and not for the idling session.
    assert [(p.key, p.text) for p in stored if isinstance(p, MailboxNote)][-1] == (
        "maildir.recent",
        "new/ → cur/ (1): cur/k2:2,",
    )
    assert not any(isinstance(p, MailboxNote) for p in pushes)
    assert b"FLAGS ()" in sent(feed(conn, b"DONE\r\nj FETCH 2 FLAGS\r\n"))
    feed(conn, b"k IDLE\r\n")
    feed(other, b"b STORE 1 +FLAGS (\\Deleted)\r\nc EXPUNGE\r\n")
    assert [p.key for p in conn.poll()] == ["imap.push.expunge"]  # type: ignore[union-attr]
    out = feed(conn, b"DONE\r\n")
    assert keys(out) == ["imap.done", "imap.idle.ok"] and sent(out) == b"k OK IDLE terminated\r\n"
    assert not conn.idling


def test_check_unselect_and_idle_without_done() -> None:
    backend = with_mail(SIMPLE)
    conn = logged_in(backend)
    assert sent(feed(conn, b"a CHECK\r\n")) == b"a OK CHECK completed\r\n"
    feed(conn, b"b STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    out = feed(conn, b"c UNSELECT\r\n")
    assert sent(out) == b"c OK UNSELECT completed\r\n" and len(backend.bob.boxes["INBOX"]) == 1
    assert b"d BAD" in sent(feed(conn, b"d CHECK\r\n"))
    feed(conn, b"e IDLE\r\n")
    out = feed(conn, b"f NOOP\r\n")
    assert keys(out) == ["imap.done", "imap.idle.bad"] and not conn.idling


def test_logout_reports_the_mailbox_on_disk() -> None:
    conn = logged_in(with_mail(SIMPLE))
    feed(conn, b"a FETCH 1 BODY[]\r\n")
    out = feed(conn, b"z LOGOUT\r\n")
    assert sent(out) == b"* BYE MailFlow Lab IMAP server logging out\r\nz OK LOGOUT completed\r\n"
    assert keys(out) == ["imap.logout", "imap.logout.ok", "maildir.state"]
    assert out[2].text == "INBOX: 1 message — cur/k1"  # type: ignore[union-attr]
    assert isinstance(out[-1], Close) and conn.closed


def test_byte_by_byte_feeding_gives_the_same_answers() -> None:
    script = (
        b"a LOGIN {13}\r\nbob@b.example {8+}\r\nbob-pass\r\nb SELECT INBOX\r\n"
        b"c APPEND INBOX {5}\r\nhello\r\nd FETCH 1:* (FLAGS BODY.PEEK[])\r\ne LOGOUT\r\n"
    )
    whole = secure()
    expected = sent(whole.receive_data(script))
    split = secure()
    got = b"".join(sent(split.receive_data(script[i : i + 1])) for i in range(len(script)))
    assert got == expected and b"e OK LOGOUT" in got


# -- fuzz ------------------------------------------------------------------------------
_RESPONSE = re.compile(rb"(\* [A-Z0-9]|\+( |$)|[^ +*(){%\"\\]+ (OK|NO|BAD) )")


def response_lines(data: bytes) -> list[bytes]:
    """Split server output into response lines, stepping over literals."""
    lines, pos = [], 0
    while pos < len(data):
        start = pos
        while True:
            end = data.find(b"\r\n", pos)
            assert end >= 0, f"reply not ending in CRLF: {data[start:]!r}"
            m = re.search(rb"\{(\d+)\}\Z", data[pos:end])
            if not m:
                pos = end + 2
                break
            pos = end + 2 + int(m.group(1))
        lines.append(data[start : pos - 2])
    return lines


_words = st.sampled_from(
    [
        b"NOOP",
        b"LOGIN",
        b"SELECT",
        b"FETCH",
        b"STORE",
        b"SEARCH",
        b"UID",
        b"IDLE",
        b"DONE",
        b"APPEND",
        b"LIST",
        b"STATUS",
        b"EXPUNGE",
        b"COPY",
        b"MOVE",
        b"AUTHENTICATE",
        b"PLAIN",
        b"1:*",
        b"*",
        b"(FLAGS",
        b"BODY[]",
        b"BODY[1.MIME]<0.5>",
        b"+FLAGS",
        b"(\\Seen)",
        b'"x',
        b"{3}",
        b"{2+}",
        b"INBOX",
        b'""',
        b"()",
        b"NIL",
        b"ALL",
        b"OR",
        b"NOT",
        b"\x00",
        b"\xff",
        b"ENVELOPE",
        b"BODYSTRUCTURE",
        b"CLOSE",
        b"LOGOUT",
        b"HEADER.FIELDS",
        b"(FROM)]",
        b"~",
    ]
)
_commands = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda tag, words: tag + b" " + b" ".join(words),
        st.sampled_from([b"a", b"b1", b"*", b"+", b""]),
        st.lists(_words, max_size=7),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_commands, max_size=12), st.booleans())
def test_fuzz_never_raises_and_replies_are_well_formed(lines: list[bytes], selected: bool) -> None:
    conn = logged_in(with_mail(SIMPLE, MULTIPART)) if selected else ImapConnection(MemBackend())
    for line in lines:
        out = conn.receive_data(line + b"\r\n")
        out += conn.poll()
        for reply in response_lines(sent(out)):
            assert _RESPONSE.match(reply), reply


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_raw_chunks(chunks: list[bytes]) -> None:
    conn = ImapConnection(MemBackend())
    data = b""
    for chunk in [*chunks, b"\r\n"]:
        data += sent(conn.receive_data(chunk))
    for reply in response_lines(data):
        assert _RESPONSE.match(reply), reply


# -- message contents come from the adapter (defer_reads) ---------------------------------------
def test_deferred_reads_ask_the_adapter_in_batches_and_hold_later_commands() -> None:
    from app.protocols.imap import ReadMessages
    from app.protocols.imap.reads import BATCH_MESSAGES, prepare

    backend = with_mail(*[SIMPLE.replace(b"Hi Bob", b"Hi Bob %d" % i) for i in range(40)])
    conn = ImapConnection(backend, tls_active=True, defer_reads=True)
    answered(conn, feed(conn, b"a LOGIN bob@b.example bob-pass\r\na SELECT INBOX\r\n"))
    data = {m.key: m.data for m in backend.bob.boxes["INBOX"]}
    reads = 0

    def answer(request: ReadMessages, drop: str | None = None) -> list[Output]:
        nonlocal reads
        reads += len(request.keys)
        loaded = {k: prepare(data[k], request.text) for k in request.keys if k != drop}
        return answered(conn, conn.messages_loaded(loaded))

    # A flags-only search reads nothing; a body search asks, a batch at a time.
    out = answered(conn, feed(conn, b"b SEARCH UNSEEN DELETED\r\n"))
    assert sent(out) == b"* SEARCH\r\nb OK SEARCH completed\r\n"
    out = feed(conn, b"c SEARCH BODY \"bob 3\"\r\nd NOOP\r\n")
    assert [type(o) for o in out] == [ClientSent, ReadMessages]  # d waits its turn
    first = out[-1]
    assert isinstance(first, ReadMessages) and first.text and len(first.keys) == BATCH_MESSAGES
    out = answer(first)
    assert isinstance(out[-1], ReadMessages) and len(out[-1].keys) == 40 - BATCH_MESSAGES
    out = answer(out[-1], drop="k40")  # expunged meanwhile: simply not found
    assert sent(out) == (
        b"* SEARCH 4 31 32 33 34 35 36 37 38 39\r\nc OK SEARCH completed\r\n"
        b"d OK NOOP completed\r\n"
    )
    assert reads == 40
    # FETCH of a body: asked for, then answered with the message's octets.
    out = feed(conn, b"e FETCH 2 BODY.PEEK[TEXT]\r\n")
    assert isinstance(out[-1], ReadMessages) and out[-1].keys == ("k2",)
    assert b"* 2 FETCH (BODY[TEXT] {10}\r\nHi Bob 1\r\n)" in sent(answer(out[-1]))


def test_lsub_lists_only_subscribed_names_and_noselect_parents_for_percent() -> None:
    conn = logged_in(select=None)
    mbx = conn.user_mailboxes()
    feed(conn, b"a CREATE pp\r\nb CREATE pp.cc\r\n")
    for name in ("INBOX", "Sent", "Trash", "pp", "pp.cc"):
        mbx.set_subscribed(name, False)
    assert sent(feed(conn, b"c SUBSCRIBE pp.cc\r\n")) == b"c OK SUBSCRIBE completed\r\n"

    def lsub(pattern: bytes) -> list[bytes]:
        return sent(feed(conn, b'd LSUB "" ' + pattern + b"\r\n")).split(b"\r\n")[:-2]

    # RFC 3501 §6.3.9: "*" gives what is subscribed, not its unsubscribed parent.
    assert lsub(b"*") == [b'* LSUB () "." pp.cc']
    # "%" stops at the first level: the parent stands in for it, as \Noselect.
    assert lsub(b"%") == [b'* LSUB (\\Noselect) "." pp']
    assert lsub(b"pp.%") == [b'* LSUB () "." pp.cc']
    # LIST is not about subscriptions: both exist and are listed as such.
    out = sent(feed(conn, b'e LIST "" *\r\n'))
    assert b'* LIST (\\HasChildren) "." pp\r\n' in out


# -- MIME structure and ENVELOPE corner cases ------------------------------------------------------
def test_top_level_message_rfc822_parts_and_folded_boundary() -> None:
    inner = (
        b"From: carol@a.example\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=IN\r\n\r\n"
        b"--IN\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--IN\r\n"
        b"Content-Type: text/plain\r\n\r\nsecond\r\n--IN--\r\n"
    )
    outer = b"From: bob@b.example\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    folded = (
        b"From: a@a.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="----=_Part_7\r\n 42"\r\n\r\n'
        b"------=_Part_7 42\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        b"------=_Part_7 42\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
        b"------=_Part_7 42--\r\n"
    )
    conn = logged_in(with_mail(outer, folded, SIMPLE))

    def fetch(q: bytes) -> bytes:
        return sent(feed(conn, b"f FETCH " + q + b"\r\n")).split(b"\r\nf OK")[0]

    # BODY[1] is the encapsulated message; BODY[1.1] its first part, not all of it again.
    assert fetch(b"1 BODY.PEEK[1]").endswith(b"{%d}\r\n" % len(inner) + inner + b")")
    assert fetch(b"1 BODY.PEEK[1.1]") == b"* 1 FETCH (BODY[1.1] {5}\r\nfirst)"
    assert fetch(b"1 BODY.PEEK[1.2]") == b"* 1 FETCH (BODY[1.2] {6}\r\nsecond)"
    assert fetch(b"3 BODY.PEEK[1.1]") == b"* 3 FETCH (BODY[1.1] {0}\r\n)"  # no such part
    # A boundary folded inside its quotes is unfolded: two parts, one line of syntax.
    structure = fetch(b"2 BODYSTRUCTURE")
    assert b'("TEXT" "PLAIN"' in structure and b'("TEXT" "HTML"' in structure
    assert b'"BOUNDARY" "----=_Part_7 42"' in structure and b"\r\n" not in structure


def test_envelope_keeps_group_syntax() -> None:
    grouped = (
        b"From: Alice <alice@a.example>\r\nTo: undisclosed-recipients:;\r\n"
        b'Cc: x@a.example, "The Team": bob@b.example, Carol <carol@a.example>;\r\n'
        b"Subject: groups\r\n\r\nhi\r\n"
    )
    conn = logged_in(with_mail(grouped))
    out = sent(feed(conn, b"a FETCH 1 ENVELOPE\r\n"))
    # RFC 3501 §7.4.2: (NIL NIL "name" NIL) opens a group, (NIL NIL NIL NIL) ends it.
    assert b'(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)' in out
    assert (
        b'((NIL NIL "x" "a.example")(NIL NIL "The Team" NIL)(NIL NIL "bob" "b.example")'
        b'("Carol" NIL "carol" "a.example")(NIL NIL NIL NIL))'
    ) in out


def test_search_from_matches_addresses_written_with_comments() -> None:
    backend = with_mail(
        SIMPLE.replace(b"Alice <alice@a.example>", b"Alice <alice (at home) @ a.example>"),
        SIMPLE.replace(b"Alice <alice@a.example>", b"alice@a.example (=?utf-8?q?Alice_L?=)"),
        SIMPLE.replace(b"Alice <alice@a.example>", b"carol@a.example"),
    )
    conn = logged_in(backend)

    def search(q: bytes) -> bytes:
        return sent(feed(conn, b"s SEARCH " + q + b"\r\n")).split(b"\r\n")[0]

    assert search(b"FROM alice@a.example") == b"* SEARCH 1 2"
    assert search(b'FROM "Alice L"') == b"* SEARCH 2"
    assert search(b"FROM <carol@a.example>") == b"* SEARCH 3"


def test_keywords_in_the_core_and_a_flags_update_when_one_is_new() -> None:
    conn = logged_in(with_mail(SIMPLE))
    out = sent(feed(conn, b"a STORE 1 +FLAGS ($Forwarded)\r\n"))
    # RFC 3501 §7.2.6: the grown set of flags comes first, then the FETCH.
    assert out.startswith(
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded \\*)]"
    )
    assert b"* 1 FETCH (FLAGS (\\Recent $Forwarded))" in out
    assert b"b BAD" in sent(feed(conn, b"b STORE 1 +FLAGS (bad]word)\r\n"))
    assert sent(feed(conn, b"c SEARCH KEYWORD $forwarded\r\n")).startswith(b"* SEARCH 1\r\n")


def test_deferred_append_move_and_expunge_hand_file_work_to_the_adapter() -> None:
    from app.protocols.imap import RemoveFiles, WriteMessages

    backend = with_mail(SIMPLE, MULTIPART)
    box = backend.bob

    def refuse(*args: object) -> None:
        raise AssertionError("the core touched the files itself")

    def register(name: str, key: str, flags: frozenset[str]) -> Msg:
        uid = box.next_uid.get(name, 1)
        box.next_uid[name] = uid + 1
        m = Msg(key, uid, flags, 1704103200.0, b"x")
        box.boxes[name].append(m)
        return m

    box.append = box.copy = box.remove = refuse  # type: ignore[method-assign]
    box.register = register  # type: ignore[attr-defined]
    conn = ImapConnection(backend, tls_active=True, defer_reads=True)
    answered(conn, feed(conn, b"a LOGIN bob@b.example bob-pass\r\nb SELECT INBOX\r\n"))
    out = feed(conn, b"c APPEND Sent (\\Seen) {3}\r\n")
    out = answered(conn, feed(conn, b"abc\r\nd NOOP\r\n"))
    request = out[-1]
    assert isinstance(request, WriteMessages) and request.mailbox == "Sent"
    assert request.messages[0].data == b"abc" and request.messages[0].flags == {"\\Seen"}
    done = sent(answered(conn, conn.messages_written(["w1"])))
    assert done.startswith(b"c OK [APPENDUID") and done.endswith(b"d OK NOOP completed\r\n")
    out = answered(conn, feed(conn, b"e UID MOVE 2 Trash\r\n"))
    write = out[-1]
    assert isinstance(write, WriteMessages) and write.messages[0].source == ("INBOX", "k2")
    remove = answered(conn, conn.messages_written(["w2"]))[-1]
    assert remove == RemoveFiles("INBOX", ("k2",))
    box.boxes["INBOX"] = [m for m in box.boxes["INBOX"] if m.key != "k2"]
    moved = sent(answered(conn, conn.files_removed(["cur/k2:2,"])))
    assert b"* OK [COPYUID" in moved and b"* 2 EXPUNGE\r\n" in moved
    assert moved.endswith(b"e OK UID MOVE completed\r\n")
    # A disk error while writing is the command's NO, not the session's end.
    feed(conn, b"f APPEND Sent {1}\r\n")
    out = answered(conn, feed(conn, b"z\r\n"))
    failed = sent(answered(conn, conn.messages_written([], OSError(28, "No space left on device"))))
    assert failed == b"f NO [SERVERBUG] Storage error: No space left on device\r\n"


# -- folder listings, flag renames and folder management come from the adapter too ----------------
class Guarded:
    """A backend the core may not call: only the test, playing the adapter, opens it."""

    def __init__(self, inner: MemMailboxes) -> None:
        self.inner = inner
        self.open = False

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def guarded(*args: object) -> object:
            if not self.open:
                raise AssertionError(f"the core called {name}() itself")
            return attr(*args)

        return guarded


class GuardedBackend(MemBackend):
    def __init__(self) -> None:
        super().__init__()
        self.guarded = Guarded(self.bob)

    def login(self, user: str, password: str) -> Guarded | None:  # type: ignore[override]
        return self.guarded if super().login(user, password) is not None else None


def _adapter_step(
    conn: ImapConnection, backend: GuardedBackend, outputs: list[Output]
) -> tuple[StorageCalls, list[Output]]:
    """The request the core ended with, and the outputs after answering it."""
    request = outputs[-1]
    assert isinstance(request, StorageCalls), outputs
    backend.guarded.open = True
    try:
        results = run_calls(backend.guarded, request.calls)
    finally:
        backend.guarded.open = False
    return request, conn.storage_done(results)


def _adapter_all(conn: ImapConnection, backend: GuardedBackend, out: list[Output]) -> list[Output]:
    done: list[Output] = []
    while out and isinstance(out[-1], StorageCalls):
        done += out[:-1]
        _, out = _adapter_step(conn, backend, out)
    return done + out


def test_folder_commands_ask_the_adapter_and_never_touch_the_store() -> None:
    from app.protocols.imap import Call

    backend = GuardedBackend()
    backend.bob.append("INBOX", SIMPLE, frozenset(), 1704103200.0)
    conn = ImapConnection(backend, tls_active=True, defer_reads=True)
    assert b"a OK" in sent(feed(conn, b"a LOGIN bob@b.example bob-pass\r\n"))

    def ops(request: StorageCalls) -> list[tuple[str, tuple[object, ...]]]:
        return [(c.op, c.args) for c in request.calls]

    # CREATE: one request off the loop, whose own check decides (a separate "does it
    # exist?" could be stale); a NOOP pipelined behind it waits for its turn.
    out = feed(conn, b"c CREATE Work\r\nn NOOP\r\n")
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("create", ("Work",))]
    assert sent(out) == b"c OK CREATE completed\r\nn OK NOOP completed\r\n"
    assert "Work" in backend.bob.boxes
    # RENAME: both names looked up in one request, then the rename.
    out = feed(conn, b"r RENAME Work Play\r\n")
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("exists", ("Work",)), ("exists", ("Play",))]
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("rename", ("Work", "Play"))]
    assert sent(out) == b"r OK RENAME completed\r\n"
    # SUBSCRIBE, then LSUB: the folders and the subscriptions file in one request.
    out = feed(conn, b"s SUBSCRIBE Play\r\n")
    _, out = _adapter_step(conn, backend, out)
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("set_subscribed", ("Play", True))]
    assert sent(out) == b"s OK SUBSCRIBE completed\r\n"
    out = feed(conn, b'l LSUB "" Pl*\r\n')
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("list", ()), ("subscriptions", ())]
    assert sent(out) == b'* LSUB () "." Play\r\nl OK LSUB completed\r\n'
    out = feed(conn, b"u UNSUBSCRIBE Play\r\n")
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("set_subscribed", ("Play", False))]
    assert sent(out) == b"u OK UNSUBSCRIBE completed\r\n"
    # LIST and STATUS.
    request, out = _adapter_step(conn, backend, feed(conn, b'l LIST "" *\r\n'))
    assert ops(request) == [("list", ())]
    assert b'* LIST (\\HasNoChildren) "." Play\r\n' in sent(out)
    out = feed(conn, b"t STATUS INBOX (MESSAGES UIDNEXT)\r\n")
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("messages", ("INBOX",)), ("uidnext", ("INBOX",))]
    assert sent(out) == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2)\r\nt OK STATUS completed\r\n"
    # DELETE: the folder and its subscription in one request.
    out = feed(conn, b"d DELETE Play\r\n")
    _, out = _adapter_step(conn, backend, out)
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("delete", ("Play",)), ("set_subscribed", ("Play", False))]
    assert sent(out) == b"d OK DELETE completed\r\n" and "Play" not in backend.bob.boxes
    # SELECT: listing and UID numbers in one request, then new/ -> cur/ (\Recent
    # claimed) as renames in one more, then the look every reply ends with.
    request, out = _adapter_step(conn, backend, feed(conn, b"x SELECT INBOX\r\n"))
    assert ops(request) == [
        ("messages", ("INBOX",)),
        ("uidvalidity", ("INBOX",)),
        ("uidnext", ("INBOX",)),
    ]
    request, out = _adapter_step(conn, backend, out)
    assert request.calls == (Call("set_flags", ("INBOX", "k1", frozenset()), missing_ok=True),)
    request, out = _adapter_step(conn, backend, out)
    assert ops(request) == [("messages", ("INBOX",))]
    assert b"* 1 EXISTS\r\n* 1 RECENT\r\n" in sent(out)
    assert sent(out).endswith(b"x OK [READ-WRITE] SELECT completed\r\n")
    assert [o.key for o in out if isinstance(o, MailboxNote)] == ["maildir.recent"]


def test_store_and_seen_renames_are_one_request_and_a_failure_is_a_clear_no() -> None:
    backend = GuardedBackend()
    for _ in range(3):
        backend.bob.append("INBOX", SIMPLE, frozenset(), 1704103200.0)
    conn = ImapConnection(backend, tls_active=True, defer_reads=True)
    feed(conn, b"a LOGIN bob@b.example bob-pass\r\n")
    _adapter_all(conn, backend, feed(conn, b"b EXAMINE INBOX\r\n"))
    out = _adapter_all(conn, backend, feed(conn, b"c STORE 1:3 +FLAGS (\\Flagged)\r\n"))
    assert sent(out) == b"c NO [READ-ONLY] The mailbox was opened with EXAMINE\r\n"
    _adapter_all(conn, backend, feed(conn, b"d SELECT INBOX\r\n"))
    # STORE: the flags on disk now, then every rename in one request.
    request, out = _adapter_step(conn, backend, feed(conn, b"e STORE 1:3 +FLAGS (\\Flagged)\r\n"))
    assert [c.op for c in request.calls] == ["messages"]
    request, out = _adapter_step(conn, backend, out)
    assert [(c.op, c.args[1]) for c in request.calls] == [
        ("set_flags", "k1"),
        ("set_flags", "k2"),
        ("set_flags", "k3"),
    ]
    _, out = _adapter_step(conn, backend, out)  # the look at the folder
    assert sent(out).count(b"FLAGS (\\Flagged \\Recent)") == 3
    assert [m.flags for m in backend.bob.boxes["INBOX"]] == [{"\\Flagged"}] * 3
    # A message gone meanwhile is skipped (set_flags answers None: missing_ok).
    out = feed(conn, b"f STORE 2 +FLAGS (\\Answered)\r\n")
    _, out = _adapter_step(conn, backend, out)
    request = out[-1]
    assert isinstance(request, StorageCalls) and request.calls[0].missing_ok
    out = conn.storage_done([None])
    _, out = _adapter_step(conn, backend, out)
    assert sent(out) == b"f OK STORE completed\r\n"
    # The disk failing is the command's NO with the reason; the session goes on.
    out = feed(conn, b"g RENAME Sent Outbox\r\nh NOOP\r\n")
    _, out = _adapter_step(conn, backend, out)
    out = _adapter_all(conn, backend, conn.storage_done([], OSError(39, "Directory not empty")))
    assert sent(out) == (
        b"g NO [CANNOT] RENAME failed, nothing was moved: Directory not empty\r\n"
        b"h OK NOOP completed\r\n"
    )
    out = feed(conn, b"i CREATE Later\r\n")
    out = _adapter_all(conn, backend, conn.storage_done([], OSError(28, "No space left on device")))
    assert sent(out) == b"i NO [SERVERBUG] Storage error: No space left on device\r\n"


def test_idle_polls_through_the_adapter() -> None:
    backend = GuardedBackend()
    backend.bob.append("INBOX", SIMPLE, frozenset(), 1704103200.0)
    conn = ImapConnection(backend, tls_active=True, defer_reads=True)
    feed(conn, b"a LOGIN bob@b.example bob-pass\r\n")
    _adapter_all(conn, backend, feed(conn, b"b SELECT INBOX\r\n"))
    assert sent(feed(conn, b"c IDLE\r\n")) == b"+ idling\r\n"
    backend.bob.append("INBOX", SIMPLE, frozenset(), 1704103200.0)  # delivered elsewhere
    request, out = _adapter_step(conn, backend, conn.poll())
    assert [c.op for c in request.calls] == ["messages"]
    # The new message's new/ -> cur/ move is one more request; DONE meanwhile waits.
    request = out[-1]
    assert isinstance(request, StorageCalls) and [c.op for c in request.calls] == ["set_flags"]
    assert feed(conn, b"DONE\r\n") == [] and not conn.idling
    out = _adapter_all(conn, backend, out)
    assert [o.key for o in out if not isinstance(o, StorageCalls)] == [
        "imap.push.exists",
        "maildir.recent",
        "imap.done",
        "imap.idle.ok",
    ]
    assert sent(out) == b"* 2 EXISTS\r\nc OK IDLE terminated\r\n"
    assert sent(out).endswith(b"c OK IDLE terminated\r\n") and not conn.idling


def test_a_header_fetch_lists_the_folder_in_the_same_trip_as_the_index() -> None:
    """The look at the folder every reply ends with rides on the FETCH's last index
    request: one trip off the loop for the command a mail program sends most."""
    from app.protocols.imap import Call, ReadSummaries
    from app.protocols.imap.summary import summarize

    backend = GuardedBackend()
    for _ in range(2):
        backend.bob.append("INBOX", SIMPLE, frozenset(), 1704103200.0)
    conn = ImapConnection(backend, tls_active=True, defer_reads=True)
    feed(conn, b"a LOGIN bob@b.example bob-pass\r\n")
    _adapter_all(conn, backend, feed(conn, b"b SELECT INBOX\r\n"))
    out = feed(conn, b"c UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    request = out[-1]
    assert isinstance(request, ReadSummaries) and request.keys == ("k1", "k2")
    assert request.calls == (Call("messages", ("INBOX",), missing_ok=True),)
    found = {k: summarize(k, backend.bob.read("INBOX", k)) for k in request.keys}
    out = conn.summaries_loaded(found, [backend.bob.messages("INBOX")])
    assert not any(isinstance(o, StorageCalls) for o in out)  # no second trip
    assert sent(out).count(b"Subject: Hello") == 2
    assert sent(out).endswith(b"c OK UID FETCH completed\r\n")

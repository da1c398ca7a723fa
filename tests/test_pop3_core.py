"""The POP3 protocol core on its own: bytes in, exchanges out, no sockets."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.protocols.pop3 import (
    CONTINUATION_KEY,
    MAX_LINE,
    Action,
    Exchange,
    MaildropEntry,
    MaildropInUse,
    POP3Connection,
    State,
    dot_stuff,
    to_wire,
    uidl_of,
    wire_size,
)

BANNER = "<1.2@pop.test>"
MSG1 = b"From: a@a.example\nSubject: one\n\nline 1\n.hidden dot\nline 3\n"
MSG2 = b"From: a@a.example\r\nSubject: two\r\n\r\nsecond"


class MemoryBackend:
    """An in-memory maildrop that records what the core asks of it."""

    def __init__(self, messages: dict[str, bytes] | None = None, fail: bool = False) -> None:
        self.passwords = {"bob": "secret pw"}
        self.messages = dict(messages if messages is not None else {"k1": MSG1, "k2": MSG2})
        self.deleted: list[str] = []
        self.fail = fail

    def authenticate(self, user: str, password: str) -> bool:
        return self.passwords.get(user) == password

    def apop_secret(self, user: str) -> str | None:
        return self.passwords.get(user)

    def open(self, user: str) -> list[MaildropEntry]:
        return [MaildropEntry(k, wire_size(v)) for k, v in self.messages.items()]

    def read(self, user: str, key: str) -> bytes:
        if self.fail:
            raise OSError("disk on fire")
        return self.messages[key]

    def delete(self, user: str, keys: list[str]) -> list[str]:
        if self.fail:
            raise OSError("disk on fire")
        for key in keys:
            del self.messages[key]
            self.deleted.append(key)
        return [f"cur/{key}:2," for key in keys]


def new_conn(backend: MemoryBackend | None = None, **kwargs: object) -> POP3Connection:
    # Most tests look at the protocol itself, so passwords are allowed before TLS
    # here; the rule that refuses them has its own tests below.
    kwargs.setdefault("cleartext_login", True)
    return POP3Connection(backend or MemoryBackend(), banner_id=BANNER, **kwargs)  # type: ignore[arg-type]


def say(conn: POP3Connection, line: str | bytes) -> Exchange:
    data = line.encode() if isinstance(line, str) else line
    exchanges = conn.receive_data(data + b"\r\n")
    assert len(exchanges) == 1
    return exchanges[0]


def logged_in(backend: MemoryBackend | None = None) -> POP3Connection:
    conn = new_conn(backend)
    say(conn, "USER bob")
    assert say(conn, "PASS secret pw").reply.data.startswith(b"+OK")
    return conn


def plain(authzid: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


# -- greeting, capabilities, login ---------------------------------------------------


def test_greeting_carries_apop_timestamp() -> None:
    reply = new_conn().greeting()
    assert reply.data == b"+OK MailFlow Lab POP3 ready <1.2@pop.test>\r\n"
    assert reply.key == "pop3.greeting"
    assert reply.text == "+OK MailFlow Lab POP3 ready <1.2@pop.test>"


def test_default_banner_ids_are_unique_msg_ids() -> None:
    a, b = POP3Connection(MemoryBackend()), POP3Connection(MemoryBackend())
    assert a.banner_id != b.banner_id
    assert a.banner_id.startswith("<") and a.banner_id.endswith("@localhost>")


def test_capa_before_and_after_login() -> None:
    conn = new_conn()
    ex = say(conn, "CAPA")
    assert ex.command.key == "pop3.capa" and ex.reply.key == "pop3.capa.ok"
    lines = ex.reply.text.split("\n")
    assert lines[0].startswith("+OK") and lines[-1] == "."
    assert {"USER", "STLS", "SASL PLAIN", "UIDL", "TOP"} <= set(lines)
    say(conn, "USER bob")
    say(conn, "PASS secret pw")
    after = say(conn, "capa").reply.text.split("\n")
    assert "STLS" not in after and "USER" not in after and "UIDL" in after


def test_no_password_before_tls_but_apop_is_allowed() -> None:
    conn = new_conn(cleartext_login=False)
    caps = say(conn, "CAPA").reply.text.split("\n")
    assert "STLS" in caps and "USER" not in caps and "SASL PLAIN" not in caps
    for line in ("USER bob", "PASS secret pw", f"AUTH PLAIN {plain('', 'bob', 'secret pw')}"):
        ex = say(conn, line)
        assert ex.reply.data.startswith(b"-ERR [AUTH] ") and b"STLS" in ex.reply.data
        assert ex.reply.key == "pop3.login.needs_tls" and not ex.login_failed
    assert conn.state is State.AUTHORIZATION and conn.failed_logins == 0
    digest = hashlib.md5(f"{BANNER}secret pw".encode()).hexdigest()
    assert say(conn, f"APOP bob {digest}").reply.data.startswith(b"+OK")  # no password sent


def test_after_stls_passwords_are_allowed_and_capa_is_asked_again() -> None:
    conn = new_conn(cleartext_login=False)
    assert say(conn, "STLS").action is Action.START_TLS
    conn.tls_started()
    again = say(conn, "CAPA")
    assert (again.command.key, again.reply.key) == ("pop3.capa.again", "pop3.capa.again.ok")
    caps = again.reply.text.split("\n")
    assert "USER" in caps and "SASL PLAIN" in caps and "STLS" not in caps
    say(conn, "USER bob")
    assert say(conn, "PASS secret pw").reply.key == "pop3.pass.ok"


def test_implicit_tls_allows_passwords_from_the_start() -> None:
    conn = new_conn(cleartext_login=False, tls_active=True)
    ex = say(conn, "CAPA")
    assert ex.command.key == "pop3.capa" and "USER" in ex.reply.text.split("\n")
    say(conn, "USER bob")
    assert say(conn, "PASS secret pw").reply.key == "pop3.pass.ok"


def test_locked_maildrop_gets_in_use() -> None:
    class Locked(MemoryBackend):
        def open(self, user: str) -> list[MaildropEntry]:
            raise MaildropInUse(user)

    conn = new_conn(Locked())
    say(conn, "USER bob")
    ex = say(conn, "PASS secret pw")
    assert ex.reply.data.startswith(b"-ERR [IN-USE] ") and ex.reply.key == "pop3.login.in_use"
    assert not ex.login_failed and conn.state is State.AUTHORIZATION and conn.maildrop is None


def test_user_pass_login() -> None:
    conn = new_conn()
    user = say(conn, "USER bob")
    assert (user.command.key, user.reply.key) == ("pop3.user", "pop3.user.ok")
    ex = say(conn, "PASS secret pw")  # passwords may contain spaces
    assert ex.command.key == "pop3.pass" and ex.reply.key == "pop3.pass.ok"
    assert ex.command.detail == {"masked": "PASS ****"}
    assert ex.command.text == "PASS secret pw"
    size = wire_size(MSG1) + wire_size(MSG2)
    assert ex.reply.text == f"+OK bob has 2 messages ({size} octets)"
    assert conn.state is State.TRANSACTION and conn.user == "bob"


def test_pass_needs_user_first() -> None:
    ex = say(new_conn(), "PASS secret pw")
    assert ex.reply.key == "pop3.pass.err" and b"USER first" in ex.reply.data
    assert not ex.login_failed


def test_three_failed_logins_close() -> None:
    conn = new_conn()
    for attempt in range(1, 4):
        say(conn, "USER bob")
        ex = say(conn, "PASS wrong")
        assert ex.reply.key == "pop3.pass.err" and ex.login_failed
        assert conn.failed_logins == attempt
    assert ex.action is Action.CLOSE and conn.closed
    assert b"too many failed logins" in ex.reply.data
    assert conn.receive_data(b"NOOP\r\n") == []


def test_failed_pass_forgets_user() -> None:
    conn = new_conn()
    say(conn, "USER bob")
    say(conn, "PASS wrong")
    assert say(conn, "PASS secret pw").reply.key == "pop3.pass.err"


def test_apop() -> None:
    digest = hashlib.md5(f"{BANNER}secret pw".encode()).hexdigest()
    conn = new_conn()
    bad = say(conn, f"APOP bob {'0' * 32}")
    assert bad.reply.key == "pop3.apop.err" and bad.login_failed
    assert say(conn, f"APOP nobody {digest}").reply.key == "pop3.apop.err"
    ex = say(conn, f"APOP bob {digest}")
    assert ex.command.key == "pop3.apop" and ex.reply.key == "pop3.apop.ok"
    assert ex.command.detail == {"masked": "APOP bob ****"}
    assert conn.state is State.TRANSACTION


@pytest.mark.parametrize("line", ["APOP", "APOP bob", "APOP bob xyz", f"APOP bob {'g' * 32}"])
def test_apop_malformed(line: str) -> None:
    ex = say(new_conn(), line)
    assert ex.reply.key == "pop3.apop.err" and not ex.login_failed


def test_auth_plain_initial_response() -> None:
    conn = new_conn()
    ex = say(conn, f"AUTH PLAIN {plain('', 'bob', 'secret pw')}")
    assert ex.command.key == "pop3.auth" and ex.reply.key == "pop3.auth.ok"
    assert ex.command.detail == {"decoded": "␀bob␀secret pw", "masked": "AUTH PLAIN ****"}
    assert conn.state is State.TRANSACTION


def test_auth_plain_continuation() -> None:
    conn = new_conn()
    first = say(conn, "auth plain")
    assert first.reply.data == b"+ \r\n" and first.reply.key == CONTINUATION_KEY
    assert first.command.detail == {}
    ex = say(conn, plain("bob", "bob", "secret pw"))
    assert ex.command.key == "pop3.auth.response" and ex.reply.key == "pop3.auth.ok"
    assert ex.command.detail["decoded"] == "bob␀bob␀secret pw"
    assert conn.state is State.TRANSACTION


def test_auth_cancel_and_garbage() -> None:
    conn = new_conn()
    say(conn, "AUTH PLAIN")
    ex = say(conn, "*")
    assert ex.reply.key == "pop3.auth.err" and b"cancelled" in ex.reply.data
    say(conn, "AUTH PLAIN")
    assert say(conn, "not base64!").reply.key == "pop3.auth.err"
    # After the response, lines are commands again.
    assert say(conn, "NOOP").reply.key == "pop3.noop.err"


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        ("AUTH", b"needs a mechanism"),
        ("AUTH LOGIN", b"unsupported"),
        ("AUTH PLAIN =", b"not base64"),
        (f"AUTH PLAIN {plain('alice', 'bob', 'secret pw')}", b"another user"),
        (f"AUTH PLAIN {plain('', 'bob', 'nope')}", b"invalid"),
    ],
)
def test_auth_failures(arg: str, reason: bytes) -> None:
    conn = new_conn()
    ex = say(conn, arg)
    assert ex.reply.key == "pop3.auth.err" and reason in ex.reply.data
    assert conn.state is State.AUTHORIZATION


# -- STLS ------------------------------------------------------------------------------


def test_stls_discards_pipelined_plaintext() -> None:
    conn = new_conn()
    exchanges = conn.receive_data(b"STLS\r\nUSER bob\r\n")
    assert len(exchanges) == 1
    ex = exchanges[0]
    assert ex.reply.data == b"+OK begin TLS negotiation\r\n" and ex.action is Action.START_TLS
    assert (ex.command.key, ex.reply.key) == ("pop3.stls", "pop3.stls.ok")
    assert conn.receive_data(b"NOOP\r\n") == []  # nothing until the handshake is done
    conn.tls_started()
    assert conn.user is None and conn.tls_active
    assert "STLS" not in say(conn, "CAPA").reply.text.split("\n")
    assert say(conn, "STLS").reply.text == "-ERR already using TLS"


def test_stls_refused_after_login_or_without_tls() -> None:
    assert say(logged_in(), "STLS").reply.key == "pop3.stls.err"
    conn = new_conn(tls_available=False)
    assert say(conn, "STLS").reply.key == "pop3.stls.err"
    assert "STLS" not in say(conn, "CAPA").reply.text


# -- TRANSACTION --------------------------------------------------------------------------


def test_stat_list_uidl() -> None:
    conn = logged_in()
    s1, s2 = wire_size(MSG1), wire_size(MSG2)
    assert say(conn, "STAT").reply.text == f"+OK 2 {s1 + s2}"
    listing = say(conn, "LIST")
    assert listing.reply.text == f"+OK 2 messages ({s1 + s2} octets)\n1 {s1}\n2 {s2}\n."
    assert say(conn, "LIST 2").reply.text == f"+OK 2 {s2}"
    assert say(conn, "UIDL").reply.text == "+OK unique-id listing\n1 k1\n2 k2\n."
    ex = say(conn, "UIDL 1")
    assert ex.reply.text == "+OK 1 k1" and ex.reply.key == "pop3.uidl.ok"


def test_retr_crlf_and_dot_stuffing() -> None:
    conn = logged_in()
    ex = say(conn, "RETR 1")
    wire = to_wire(MSG1)
    expected = b"+OK %d octets\r\n" % len(wire) + wire.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert ex.reply.data == expected
    assert ex.reply.key == "pop3.retr.ok"
    assert ex.reply.text.endswith("\n..hidden dot\nline 3\n.")
    # A message without a final newline still ends on its own line before the '.'.
    assert say(conn, "RETR 2").reply.data.endswith(b"second\r\n.\r\n")


def test_top() -> None:
    conn = logged_in()
    assert say(conn, "TOP 1 0").reply.text.split("\n")[1:] == [
        "From: a@a.example",
        "Subject: one",
        "",
        ".",
    ]
    assert say(conn, "TOP 1 2").reply.text.endswith("\n\nline 1\n..hidden dot\n.")
    for bad in ("TOP 1", "TOP 1 -1", "TOP x 1", "TOP 9 1"):
        assert say(conn, bad).reply.key == "pop3.top.err"


def test_dele_marks_and_rset_unmarks() -> None:
    backend = MemoryBackend()
    conn = logged_in(backend)
    ex = say(conn, "DELE 1")
    assert ex.reply.key == "pop3.dele.ok"
    assert say(conn, "STAT").reply.text == f"+OK 1 {wire_size(MSG2)}"
    for line in ("DELE 1", "RETR 1", "LIST 1", "UIDL 1", "TOP 1 0"):
        reply = say(conn, line).reply
        assert reply.text == "-ERR message 1 already deleted", line
    assert "\n1 " not in say(conn, "LIST").reply.text
    assert backend.deleted == []  # only marked so far
    assert say(conn, "RSET").reply.key == "pop3.rset.ok"
    assert say(conn, "RETR 1").reply.key == "pop3.retr.ok"


def test_quit_in_transaction_removes_marked_only() -> None:
    backend = MemoryBackend()
    conn = logged_in(backend)
    say(conn, "RETR 1")
    say(conn, "DELE 2")
    ex = say(conn, "QUIT")
    assert ex.reply.key == "pop3.quit.ok" and ex.action is Action.CLOSE and ex.updated
    assert ex.removed == ("cur/k2:2,",)
    assert backend.deleted == ["k2"] and conn.closed


def test_dropped_connection_removes_nothing() -> None:
    backend = MemoryBackend()
    conn = logged_in(backend)
    say(conn, "DELE 1")
    conn.connection_lost()
    assert backend.deleted == [] and conn.closed
    assert conn.receive_data(b"QUIT\r\n") == []


def test_timeout_removes_nothing() -> None:
    backend = MemoryBackend()
    conn = logged_in(backend)
    say(conn, "DELE 1")
    reply = conn.timeout()
    assert reply.data == b"-ERR idle timeout\r\n" and reply.key == "pop3.timeout"
    assert backend.deleted == [] and conn.closed


def test_quit_before_login() -> None:
    ex = say(new_conn(), "QUIT")
    assert ex.reply.key == "pop3.quit.ok" and ex.action is Action.CLOSE
    assert not ex.updated and ex.removed == ()


def test_backend_failure_becomes_err() -> None:
    backend = MemoryBackend(fail=True)
    conn = logged_in(backend)
    assert say(conn, "RETR 1").reply.text.startswith("-ERR [SYS/TEMP]")
    say(conn, "DELE 1")
    ex = say(conn, "QUIT")
    assert ex.reply.key == "pop3.quit.err" and ex.action is Action.CLOSE


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "UIDL"])
def test_transaction_commands_need_login(line: str) -> None:
    ex = say(new_conn(), line)
    verb = line.split()[0].lower()
    assert ex.reply.key == f"pop3.{verb}.err" and b"after login" in ex.reply.data


@pytest.mark.parametrize("line", ["USER bob", "PASS x", "APOP a b", "AUTH PLAIN"])
def test_login_commands_refused_after_login(line: str) -> None:
    assert b"before login" in say(logged_in(), line).reply.data


@pytest.mark.parametrize("number", ["0", "3", "-1", "+1", "x", "1.0", "١", "99999999999999999999"])
def test_bad_message_numbers(number: str) -> None:
    ex = say(logged_in(), f"RETR {number}")
    assert ex.reply.key == "pop3.retr.err"


@pytest.mark.parametrize("line", ["STAT 1", "LIST 1 2", "RETR", "RETR 1 2", "DELE", "NOOP x"])
def test_bad_arguments(line: str) -> None:
    assert say(logged_in(), line).reply.data.startswith(b"-ERR")


def test_unknown_and_empty_commands() -> None:
    conn = new_conn()
    ex = say(conn, "HELO there")
    assert (ex.command.key, ex.reply.key) == ("pop3.unknown", "pop3.unknown.err")
    assert ex.reply.text == "-ERR unknown command 'HELO'"
    assert say(conn, "").reply.text == "-ERR empty command"


def test_nul_and_binary_bytes() -> None:
    conn = new_conn()
    ex = say(conn, b"USER b\x00b")
    assert ex.reply.key == "pop3.user.err" and b"NUL" in ex.reply.data
    assert say(conn, b"\xff\xfe\x00").reply.key == "pop3.unknown.err"


def test_line_limit_is_255_octets_including_crlf() -> None:
    conn = new_conn()
    fits = "USER " + "u" * (MAX_LINE - 7)  # + CRLF = 255
    assert say(conn, fits).reply.key == "pop3.user.ok"
    ex = say(conn, fits + "u")
    assert ex.reply.data == b"-ERR line too long\r\n"
    assert (ex.command.key, ex.reply.key) == ("pop3.toolong", "pop3.toolong.err")
    assert ex.command.detail["octets"] == "256"


def test_overlong_line_in_pieces_keeps_memory_bounded() -> None:
    conn = new_conn()
    for _ in range(25):
        assert conn.receive_data(b"A" * 400) == []
    assert len(conn._buffer) < MAX_LINE  # only a display prefix is kept
    exchanges = conn.receive_data(b"AA\r\nNOOP\r\nCAPA\r\n")
    assert [e.reply.key for e in exchanges] == [
        "pop3.toolong.err",
        "pop3.noop.err",
        "pop3.capa.ok",
    ]
    assert exchanges[0].command.detail["octets"] == str(25 * 400 + 4)
    assert exchanges[0].command.text == "A" * 255


def test_pipelined_and_split_input() -> None:
    conn = new_conn()
    assert conn.receive_data(b"US") == []
    exchanges = conn.receive_data(b"ER bob\r\nPASS secret pw\r\nSTAT\r\nNOOP")
    assert [e.command.key for e in exchanges] == ["pop3.user", "pop3.pass", "pop3.stat"]
    assert [e.reply.key for e in conn.receive_data(b"\r\n")] == ["pop3.noop.ok"]


def test_bare_lf_is_accepted_and_not_shown() -> None:
    ex = new_conn().receive_data(b"CAPA\n")[0]
    assert ex.command.text == "CAPA" and ex.reply.key == "pop3.capa.ok"


def test_reply_never_echoes_line_breaks() -> None:
    ex = say(new_conn(), "X\rY")
    assert ex.reply.data.count(b"\r") == 1 and ex.reply.data.endswith(b"\r\n")


def test_wire_helpers() -> None:
    assert to_wire(b"a\nb") == b"a\r\nb\r\n"
    assert to_wire(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert dot_stuff(b".a\r\nb\r\n..c\r\n") == b"..a\r\nb\r\n...c\r\n"
    assert uidl_of("1700000000.M1P2Q3.host") == "1700000000.M1P2Q3.host"
    long_key = "x" * 80
    assert uidl_of(long_key) == uidl_of(long_key) and len(uidl_of(long_key)) <= 70
    assert uidl_of("has space") != "has space"


# -- fuzzing ------------------------------------------------------------------------------

VERBS = [b"USER", b"PASS", b"APOP", b"AUTH", b"STLS", b"CAPA", b"STAT", b"LIST", b"RETR"]
VERBS += [b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL", b"QUIT", b"user", b"AUTH PLAIN"]

garbage = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
commands = st.builds(
    lambda verb, arg: verb + b" " + arg if arg else verb,
    st.sampled_from(VERBS),
    st.one_of(
        st.just(b""),
        st.sampled_from([b"1", b"2", b"0", b"3", b"1 0", b"bob", b"secret pw", b"PLAIN"]),
        garbage,
    ),
)
lines = st.one_of(garbage, commands)


def check_reply(ex: Exchange) -> None:
    data = ex.reply.data
    assert data.endswith(b"\r\n")
    if ex.reply.key == CONTINUATION_KEY:
        assert data == b"+ \r\n"
    else:
        assert data.startswith((b"+OK", b"-ERR"))
        verdict = "ok" if data.startswith(b"+OK") else "err"
        assert ex.reply.key.endswith("." + verdict)
    assert not ex.reply.text.endswith("\n") and not ex.command.text.endswith("\n")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(lines, max_size=12), st.booleans())
def test_fuzz_lines_always_get_ok_or_err(batch: list[bytes], start_logged_in: bool) -> None:
    backend = MemoryBackend()
    conn = logged_in(backend) if start_logged_in else new_conn(backend)
    updated = False
    for line in batch:
        for ex in conn.receive_data(line + b"\r\n"):
            check_reply(ex)
            updated |= ex.updated
        if conn._awaiting_tls:
            conn.tls_started()
    # Mail disappears only in the UPDATE state that follows QUIT.
    if not updated:
        assert backend.deleted == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_raw_stream(data: bytes) -> None:
    conn = logged_in()
    for ex in conn.receive_data(data):
        check_reply(ex)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_receive_line(line: bytes) -> None:
    check_reply(new_conn().receive_line(line))

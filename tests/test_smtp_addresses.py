"""The tap's fast path for simple MAIL/RCPT paths must answer exactly as aiosmtpd's
full RFC 5322 parser does, for every input, including the ones it hands back to it."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engines.base import Endpoint
from app.engines.smtp_tap import _SIMPLE_PATH, TappedSMTP


def _outcome(parse, arg: str) -> object:
    # aiosmtpd's parser itself raises on some garbage (e.g. "<"); the fast path must too.
    try:
        return parse(arg)
    except Exception as exc:
        return type(exc)


_loop = asyncio.new_event_loop()  # only handed over; the parsers never run it
_endpoint = Endpoint(1, "SMTP", 587, "msa-a", "mua", "mail.a.example")
TAPPED = TappedSMTP(object(), endpoint=_endpoint, sink=lambda e: None, hostname="h", loop=_loop)
PLAIN = SMTP(object(), hostname="h", loop=_loop)


CHARS = list('ab0Z.@<> \t()"-=+_é[]\\:;,\x1f\x7f')
tails = st.text(st.sampled_from(CHARS), max_size=12)
atoms = st.from_regex(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,6}(\.[A-Za-z0-9-]{1,4}){0,2}", fullmatch=True
)
near_simple = st.builds(lambda lo, do, tail: f"<{lo}@{do}>{tail}", atoms, atoms, tails)


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from(CHARS), max_size=24),
        near_simple,
        st.from_regex(_SIMPLE_PATH, fullmatch=True),
    )
)
def test_fast_path_agrees_with_aiosmtpd(arg: str) -> None:
    assert _outcome(TAPPED._getaddr, arg) == _outcome(PLAIN._getaddr, arg)


def test_the_common_forms_take_the_fast_path() -> None:
    for arg in ("<bob@b.example>", "<alice@a.example> SIZE=2300 BODY=8BITMIME"):
        assert _SIMPLE_PATH.fullmatch(arg)
    for arg in ("<>", '<"a b"@c>', "<a@b> (comment)", "<@r:a@b>", "<ä@b>"):
        assert not _SIMPLE_PATH.fullmatch(arg)


def test_the_tapped_server_finds_the_commands_and_mechanisms_aiosmtpd_would() -> None:
    # The tap shortens dir() to the smtp_*/auth_* names aiosmtpd looks for; what aiosmtpd
    # builds from it must not change.
    class Plain(SMTP):
        async def smtp_AUTH(self, arg: str) -> None:  # TappedSMTP overrides it too
            await super().smtp_AUTH(arg)

    plain = Plain(object(), hostname="h", loop=_loop)
    assert TAPPED._smtp_methods.keys() == plain._smtp_methods.keys()
    assert TAPPED._auth_methods.keys() == plain._auth_methods.keys() == {"LOGIN", "PLAIN"}
    assert "smtp_STARTTLS" in dir(TAPPED) and "auth_PLAIN" in dir(TAPPED)

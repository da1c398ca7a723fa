"""The two foundation scenarios, run for real through the runner: the key lines of
each panel are the ones the engines really exchanged, in order."""

from __future__ import annotations

import asyncio
import email
import re
from pathlib import Path

import pytest

from app.engines.tls import LabTLS
from app.events import Event
from app.scenarios.model import load_all
from app.scenarios.runner import Recording, run_scenario

SCENARIOS = load_all()


async def record(slug: str, lab_tls: LabTLS, tmp_path: Path, lang: str = "ja") -> Recording:
    return await run_scenario(SCENARIOS[slug], lab_tls, tmp_path / "runs", lang)


def texts(events: tuple[Event, ...], panel: int) -> list[str]:
    return [e.text for e in events if e.panel == panel]


def first_words(events: tuple[Event, ...], panel: int) -> list[str]:
    return [e.text.split()[0] if e.text else "" for e in events if e.panel == panel]


def assert_in_order(seq: list[str], expected: list[str]) -> None:
    """Every expected item appears in seq, in this order (others may sit between)."""
    it = iter(seq)
    for want in expected:
        assert any(want == got for got in it), f"{want!r} missing or out of order in {seq}"


async def test_basic_pop3_submission_panel(lab_tls: LabTLS, tmp_path: Path) -> None:
    rec = await record("basic-pop3", lab_tls, tmp_path)
    words = first_words(rec.events, 1)
    assert_in_order(
        words,
        [
            "220",
            "EHLO",
            "250-mail.a.example",
            "STARTTLS",
            "220",
            "TLSv1.3",
            "EHLO",
            "AUTH",
            "235",
            "MAIL",
            "250",
            "RCPT",
            "250",
            "DATA",
            "354",
            "From:",
            ".",
            "250",
            "QUIT",
            "221",
        ],
    )
    panel1 = [e for e in rec.events if e.panel == 1]
    assert all(e.port == 587 for e in panel1)
    # Everything after the handshake travelled inside TLS; before it, nothing did.
    handshake = next(i for i, e in enumerate(panel1) if e.key == "tls.handshake")
    assert not any(e.tls for e in panel1[:handshake])
    assert all(e.tls for e in panel1[handshake:])
    auth = next(e for e in panel1 if e.text.startswith("AUTH PLAIN"))
    assert auth.detail["decoded"] == "␀alice@a.example␀alice-pass"


async def test_basic_pop3_relay_and_delivery_panels(lab_tls: LabTLS, tmp_path: Path) -> None:
    rec = await record("basic-pop3", lab_tls, tmp_path)
    p2 = [e for e in rec.events if e.panel == 2]
    assert [e.key for e in p2[:4]] == [
        "dns.query.mx",
        "dns.answer.mx",
        "dns.query.a",
        "dns.answer.a",
    ]
    assert "IN MX 10 mx.b.example." in p2[1].text
    smtp = [e for e in p2 if e.protocol == "SMTP"]
    assert smtp[0].text.startswith("220 mx.b.example") and all(e.port == 25 for e in smtp)
    assert_in_order(
        [e.text.split()[0] for e in smtp],
        ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", ".", "QUIT"],
    )
    p3 = [e for e in rec.events if e.panel == 3]
    assert_in_order([e.text.split()[0] for e in p3], ["LHLO", "MAIL", "RCPT", "DATA", ".", "QUIT"])
    deliver = next(e for e in p3 if e.key == "maildir.deliver")
    assert re.fullmatch(r"new/\d+\.M\d+P\d+Q\d+\..+", deliver.text)


async def test_basic_pop3_retrieval_deletes_for_real(lab_tls: LabTLS, tmp_path: Path) -> None:
    rec = await record("basic-pop3", lab_tls, tmp_path)
    p4 = [e for e in rec.events if e.panel == 4]
    commands = [e.text.split()[0] for e in p4 if e.direction == "c2s"]
    assert_in_order(commands, ["STLS", "USER", "PASS", "STAT", "LIST", "RETR", "DELE", "QUIT"])
    retr = next(e for e in p4 if e.key == "pop3.retr.ok")
    message = email.message_from_string(retr.text.split("\n", 1)[1].rsplit("\n.", 1)[0])
    # One Received: per hop (MSA, MX, MDA) and the Return-Path of final delivery.
    assert len(message.get_all("Received")) == 3
    assert message["Return-Path"] == "<alice@a.example>"
    assert "金曜日" in retr.text
    removed = [e for e in p4 if e.key == "maildir.remove"]
    state = [e for e in p4 if e.key == "maildir.state"][-1]
    assert len(removed) == 1 and "INBOX: 0 messages" in state.text


async def test_basic_imap_keeps_the_mail_marked_seen(lab_tls: LabTLS, tmp_path: Path) -> None:
    rec = await record("basic-imap", lab_tls, tmp_path, "en")
    p4 = [e for e in rec.events if e.panel == 4]
    commands = [
        e.text.split()[1].upper() for e in p4 if e.direction == "c2s" and len(e.text.split()) > 1
    ]
    assert_in_order(commands, ["STARTTLS", "LOGIN", "SELECT", "FETCH", "STORE", "LOGOUT"])
    assert all(e.port == 143 for e in p4)
    flags = [e for e in p4 if e.key == "maildir.flags"]
    assert flags and flags[-1].text.endswith(":2,S")
    state = [e for e in p4 if e.key == "maildir.state"][-1]
    assert "1 message" in state.text and ":2,S" in state.text
    assert not any(e.key == "maildir.remove" for e in p4)
    assert any("Lunch together on Friday?" in e.text for e in p4)


async def test_each_run_is_a_fresh_exchange_and_worlds_are_isolated(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    a, b = await asyncio.gather(
        record("basic-pop3", lab_tls, tmp_path), record("basic-pop3", lab_tls, tmp_path)
    )

    def message_id(rec: Recording) -> str:
        content = next(e for e in rec.events if e.key == "smtp.data.content" and e.panel == 1)
        return re.search(r"Message-ID: (\S+)", content.text).group(1)

    assert message_id(a) != message_id(b)
    # Each world delivered exactly one mail and fetched exactly one: no cross-talk.
    for rec in (a, b):
        assert sum(e.key == "maildir.deliver" for e in rec.events) == 1
        assert sum(e.key == "pop3.retr.ok" for e in rec.events) == 1
    assert not list((tmp_path / "runs").iterdir())  # run directories are cleaned up


@pytest.mark.parametrize("slug", sorted(SCENARIOS))
async def test_every_event_has_an_explanation_in_both_languages(
    slug: str, lab_tls: LabTLS, tmp_path: Path
) -> None:
    from app.explanations import Catalog

    catalog = Catalog.load()
    rec = await record(slug, lab_tls, tmp_path)
    missing = sorted({e.key for e in rec.events if catalog.lookup(e.key) is None})
    assert not missing, f"no explanation for {missing}"
    for e in rec.events:
        exp = catalog.lookup(e.key)
        assert exp.text["ja"] and exp.text["en"] and exp.rfc.startswith("RFC "), e.key

"""The scenario library (issue 5), each run headless through the real runner: the
key lines are the ones the engines really exchanged under the scenario's policy."""

from __future__ import annotations

import email
import re
import tomllib
from email.policy import default as default_policy
from pathlib import Path

import pytest

from app.engines.tls import LabTLS
from app.events import Event
from app.scenarios.model import LANGS, load_all
from app.scenarios.runner import Recording, run_scenario

SCENARIOS = load_all()
LIBRARY = (
    "pop3-keep",
    "imap-two-devices",
    "auth-failure",
    "op25b",
    "unknown-recipient",
    "open-relay",
    "tls-ports",
    "spoofing",
    "mx-fallback",
    "pop-before-smtp",
    "bcc-envelope",
    "mime-attachment",
    "smime",
    "ppap",
)
FACTS = Path(__file__).resolve().parents[2] / "shared" / "content-facts.md"
_recordings: dict[str, Recording] = {}


async def record(slug: str, lab_tls: LabTLS, tmp_path: Path) -> Recording:
    # Each scenario runs once per test session; a Recording is plain data.
    if slug not in _recordings:
        _recordings[slug] = await run_scenario(SCENARIOS[slug], lab_tls, tmp_path / "runs", "en")
    return _recordings[slug]


def find(events: tuple[Event, ...], key: str) -> list[Event]:
    return [e for e in events if e.key == key]


def replies(events: tuple[Event, ...], code: str) -> list[Event]:
    return [e for e in events if e.direction == "s2c" and e.text.startswith(code)]


def retrieved(event: Event) -> email.message.EmailMessage:
    """The message inside a POP3 RETR or IMAP FETCH reply."""
    body = event.text.split("\n", 1)[1]
    body = re.sub(r"\n\)\n\S+ OK FETCH completed$", "", body)
    body = re.sub(r"\n\.$", "", body)
    return email.message_from_string(body, policy=default_policy)


# -- content checks -------------------------------------------------------------------
@pytest.mark.parametrize("slug", [s for s in LIBRARY if s in SCENARIOS])
def test_scenario_has_bilingual_text_and_topics(slug: str) -> None:
    scenario = SCENARIOS[slug]
    for part in ("title", "intro", "summary"):
        for lang in LANGS:
            assert scenario.text(part, lang), (slug, part, lang)
    assert scenario.topics


def test_every_exam_topic_is_covered_by_a_scenario() -> None:
    if not set(LIBRARY) <= set(SCENARIOS):
        pytest.skip("library not complete yet")
    ids = set(re.findall(r"^\| `([a-z0-9-]+)` \|", FACTS.read_text("utf-8"), re.M))
    assert len(ids) >= 14
    covered = {t for s in SCENARIOS.values() for t in s.topics}
    assert ids <= covered, f"topics without a scenario: {sorted(ids - covered)}"
    assert covered <= ids, f"unknown topic ids: {sorted(covered - ids)}"


def test_new_actors_have_labels() -> None:
    from app.web.flow_view import JOURNEY_ORDER

    labels = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "app/content/actors.toml").read_text("utf-8")
    )
    for actor in JOURNEY_ORDER:
        assert labels[actor]["ja"] and labels[actor]["en"] and labels[actor]["role"]


# -- the scenarios ---------------------------------------------------------------------
async def test_auth_failure(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("auth-failure", lab_tls, tmp_path)).events
    assert replies(ev, "535 5.7.8")
    # AUTH on the plaintext connection is refused before any credentials are checked.
    plain_auth = [e for e in ev if e.text.startswith("AUTH PLAIN") and not e.tls]
    assert plain_auth
    assert any(e.text.startswith(("538", "530")) and not e.tls for e in ev if e.direction == "s2c")
    assert replies(ev, "530 5.7.0")
    assert replies(ev, "235")[0].seq > replies(ev, "530 5.7.0")[0].seq
    assert replies(ev, "250 2.0.0 Ok: queued")


async def test_open_relay(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("open-relay", lab_tls, tmp_path)).events
    refused = replies(ev, "554 5.7.1")
    assert refused and "Relay access denied" in refused[0].text
    assert refused[0].src == "mta-a" and refused[0].dst == "host-x" and refused[0].port == 25
    assert any(e.text == "RCPT TO:<alice@a.example>" for e in ev)
    assert replies(ev, "250 2.1.5")  # its own domain is still accepted


async def test_unknown_recipient_bounces_to_alice(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("unknown-recipient", lab_tls, tmp_path)).events
    assert replies(ev, "250 2.0.0 Ok: queued")[0].panel == 1
    refused = replies(ev, "550 5.1.1")
    assert refused and refused[0].src == "mta-b"
    assert find(ev, "dsn.create")
    assert any(e.protocol == "LMTP" and e.text == "MAIL FROM:<>" for e in ev)
    fetch = [e for e in ev if e.key == "imap.fetch.ok" and e.dst == "mua-alice"]
    bounce = retrieved(fetch[-1])
    assert bounce.get_content_type() == "multipart/report"
    assert bounce.get_param("report-type") == "delivery-status"
    status = next(p for p in bounce.walk() if p.get_content_type() == "message/delivery-status")
    assert "Status: 5.1.1" in status.as_string()
    assert bounce["Return-Path"] == "<>"


async def test_bcc_is_only_in_the_envelope(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("bcc-envelope", lab_tls, tmp_path)).events
    rcpts = [e.text for e in ev if e.panel == 1 and e.text.startswith("RCPT TO:")]
    assert rcpts == [
        "RCPT TO:<bob@b.example>",
        "RCPT TO:<carol@b.example>",
        "RCPT TO:<dave@b.example>",
    ]
    content = find(ev, "smtp.data.content")
    assert content and all("Bcc" not in e.text and "dave" not in e.text for e in content)
    dave = retrieved(next(e for e in ev if e.key == "pop3.retr.ok" and e.dst == "mua-dave"))
    assert dave["Bcc"] is None and "dave" not in (dave["To"] + dave["Cc"])
    assert dave["Delivered-To"] == "dave@b.example"
    assert dave["Return-Path"] == "<alice@a.example>"
    assert dave["From"] == "Alice <alice@a.example>"


async def test_mx_fallback_lower_preference_first(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("mx-fallback", lab_tls, tmp_path)).events
    answer = find(ev, "dns.answer.mx")[0].text.splitlines()
    assert "MX 10 mx.b.example." in answer[0] and "MX 20 mx2.b.example." in answer[1]
    failed = find(ev, "relay.connect_failed")
    nxt = find(ev, "relay.next_mx")
    assert failed[0].dst == "mx.b.example" and "refused" in failed[0].text.lower()
    assert nxt and nxt[0].seq > failed[0].seq and "mx2.b.example (MX 20)" in nxt[0].text
    greeting = replies(ev, "220 mx2.b.example")
    assert greeting and greeting[0].seq > nxt[0].seq and greeting[0].src == "mta-b2"
    assert not replies(ev, "220 mx.b.example")
    assert find(ev, "maildir.deliver")


async def test_pop3_keep_uses_uidl_and_never_deletes(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("pop3-keep", lab_tls, tmp_path)).events
    pop = [e for e in ev if e.protocol == "POP3" and e.direction == "c2s"]
    assert not any(e.text.startswith("DELE") for e in pop)
    sessions: dict[str, list[str]] = {}
    for e in pop:
        sessions.setdefault(e.session, []).append(e.text)
    retrs = [[t for t in s if t.startswith("RETR")] for s in sessions.values()]
    assert retrs == [["RETR 1"], ["RETR 1", "RETR 2"], ["RETR 2"]]
    assert all("UIDL" in s for s in sessions.values())
    assert not find(ev, "maildir.remove")
    assert "INBOX: 2 messages" in find(ev, "maildir.state")[-1].text

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
    "dnsbl",
    "lookalike-domain",
    "rlo-attachment",
    "send-hold",
)
# The one list of topic ids (tests never read outside the repository).
TOPICS_FILE = Path(__file__).resolve().parents[1] / "app" / "content" / "quiz" / "topics.toml"
TOPICS = TOPICS_FILE
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
@pytest.mark.parametrize("slug", LIBRARY)
def test_scenario_has_bilingual_text_and_topics(slug: str) -> None:
    scenario = SCENARIOS[slug]
    for part in ("title", "intro", "summary"):
        for lang in LANGS:
            assert scenario.text(part, lang), (slug, part, lang)
    assert scenario.topics


def test_every_exam_topic_is_covered_by_a_scenario() -> None:
    """Every topic id of the repository's list is shown by a scenario, except the law
    (特定電子メール法), which only the question bank covers."""
    ids = {t["id"] for t in tomllib.loads(TOPICS.read_text("utf-8"))["topics"]}
    assert len(ids) >= 19
    covered = {t for s in SCENARIOS.values() for t in s.topics}
    assert ids - covered <= {"anti-spam-law"}, sorted(ids - covered)
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


async def test_imap_two_devices_share_flags_and_get_pushed(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("imap-two-devices", lab_tls, tmp_path)).events
    phone = [e for e in ev if e.protocol == "IMAP" and "mua-bob-phone" in (e.src, e.dst)]
    pc = [e for e in ev if e.protocol == "IMAP" and "mua-bob-pc" in (e.src, e.dst)]
    assert any("FETCH 1 (FLAGS BODY[])" in e.text for e in phone)
    # The PC, in a later session, sees the flag the phone's read set on the server.
    pc_flags = next(e for e in pc if e.key == "imap.fetch.ok")
    assert "* 1 FETCH (FLAGS (\\Seen))" in pc_flags.text
    idle = next(e for e in pc if e.text.endswith(" IDLE"))
    push = next(e for e in pc if e.key == "imap.push.exists")
    assert push.text == "* 2 EXISTS" and push.seq > idle.seq
    delivered_second = find(ev, "maildir.deliver")[1]
    assert push.seq > delivered_second.seq
    pc_cmds = [e.text.split(" ", 1)[1] for e in pc if e.direction == "c2s" and " " in e.text]
    store = pc_cmds.index("STORE 1 +FLAGS (\\Deleted)")
    assert pc_cmds[store + 1] == "EXPUNGE"
    assert find(ev, "maildir.remove")
    assert "INBOX: 1 message" in find(ev, "maildir.state")[-1].text


async def test_tls_ports_starttls_next_to_implicit_tls(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("tls-ports", lab_tls, tmp_path)).events
    by_port: dict[int, list[Event]] = {}
    for e in ev:
        if e.protocol in ("SMTP", "POP3", "IMAP", "TLS") and e.port is not None:
            by_port.setdefault(e.port, []).append(e)
    assert {587, 465, 110, 995, 143, 993} <= set(by_port)
    for port in (465, 995, 993):
        # Implicit TLS: the handshake comes before the greeting, nothing is in clear.
        first = by_port[port][0]
        assert first.key == "tls.handshake" and all(e.tls for e in by_port[port]), port
    for port in (587, 143):
        events = by_port[port]
        handshake = next(i for i, e in enumerate(events) if e.key == "tls.handshake")
        assert handshake > 0 and not any(e.tls for e in events[:handshake]), port
    apop = next(e for e in ev if e.key == "pop3.apop")
    assert apop.port == 110 and not apop.tls and re.fullmatch(r"APOP \S+ [0-9a-f]{32}", apop.text)
    assert "alice-pass" not in apop.text and "bob-pass" not in apop.text
    # ... yet the mail itself crossed port 110 in the clear.
    retr = next(e for e in ev if e.key == "pop3.retr.ok" and e.port == 110)
    assert not retr.tls and "Sent on port 587" in retr.text


async def test_op25b_firewall_refuses_port_25(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("op25b", lab_tls, tmp_path)).events
    block = find(ev, "firewall.block.25")
    assert block and block[0].src == "isp-fw" and block[0].dst == "mua-alice"
    assert "198.51.100.23" in block[0].text and ":25" in block[0].text
    # No SMTP line ever reached mx.b.example from Alice's home address.
    assert not any(e.src == "mua-alice" and e.dst == "mta-b" for e in ev)
    passed = find(ev, "firewall.pass.587")
    assert passed and passed[0].seq > block[0].seq
    assert replies(ev, "235") and find(ev, "maildir.deliver") and find(ev, "pop3.retr.ok")


async def test_mime_attachment_base64(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("mime-attachment", lab_tls, tmp_path)).events
    content = find(ev, "smtp.data.content")[0].text
    assert "multipart/mixed" in content and "Content-Transfer-Encoding: base64" in content
    msg = retrieved(find(ev, "pop3.retr.ok")[0])
    part = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    lines = [line for line in part.get_payload().splitlines() if line]
    assert len(lines) >= 2 and all(len(line) <= 76 for line in lines)
    assert part.get_payload(decode=True).startswith(b"\x89PNG")
    note = find(ev, "mime.base64.decode")[0]
    assert "0x89 0x50 0x4E" in note.text and "i V B O" in note.text
    assert "3 bytes → 4 characters" in note.text


async def test_spoofing_rejected_real_mail_passes(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("spoofing", lab_tls, tmp_path)).events
    forged = [e for e in ev if "mta-evil" in (e.src, e.dst)]
    keys = [e.key for e in forged]
    assert "spf.result.fail" in keys and "dkim.result.fail" in keys
    assert "dmarc.result.fail" in keys
    reject = next(e for e in forged if e.text.startswith("550 5.7.1"))
    assert "DMARC" in reject.text and reject.src == "mta-b"
    assert any(e.text.startswith('_dmarc.a.example. 3600 IN TXT "v=DMARC1; p=reject') for e in ev)
    assert find(ev, "dkim.sign")[0].text.startswith("DKIM-Signature: v=1; a=rsa-sha256")
    real = [e for e in ev if "mta-a" in (e.src, e.dst) and e.protocol == "SMTP"]
    real_keys = [e.key for e in real]
    assert {"spf.result.pass", "dkim.result.pass", "dmarc.result.pass"} <= set(real_keys)
    msg = retrieved(find(ev, "imap.fetch.ok")[-1])
    results = msg["Authentication-Results"]
    assert "spf=pass" in results and "dkim=pass" in results and "dmarc=pass" in results
    assert msg["DKIM-Signature"] is not None
    assert sum(e.key == "maildir.deliver" for e in ev) == 1  # the forged mail never landed


async def test_pop_before_smtp_opens_relaying(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("pop-before-smtp", lab_tls, tmp_path)).events
    denied = replies(ev, "554 5.7.1")
    opened = find(ev, "popbsmtp.open")
    assert denied and opened and opened[0].seq > denied[0].seq
    assert "198.51.100.23" in opened[0].text
    accepted = [e for e in replies(ev, "250 2.1.5") if e.port == 25 and e.dst == "mua-alice"]
    assert accepted and accepted[0].seq > opened[0].seq
    assert find(ev, "maildir.deliver")


async def test_smime_ciphertext_on_every_hop(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("smime", lab_tls, tmp_path)).events
    secret = "1.2 million yen"
    contents = [e for e in ev if e.key in ("smtp.data.content", "lmtp.data.content")]
    plain = [e for e in contents if "TLS only" in e.text]
    sealed = [e for e in contents if "S/MIME" in e.text and "Contract" in e.text]
    # The TLS-only mail: every server saw the body (shown decrypted, tls=True).
    assert len(plain) == 3 and all(secret in e.text and e.tls == (e.port != 24) for e in plain)
    # The S/MIME mail: every hop carried ciphertext only.
    assert len(sealed) == 3
    for e in sealed:
        assert "application/pkcs7-mime" in e.text and secret not in e.text
    fetched = find(ev, "imap.fetch.ok")[-1]
    assert "smime.p7m" in fetched.text and secret not in fetched.text
    opened = find(ev, "smime.decrypt")[0]
    assert secret in opened.text and opened.seq > fetched.seq and opened.src == "mua-bob"
    assert "Verification successful" in find(ev, "smime.verify")[0].text


async def test_ppap_path_reader_opens_the_zip(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("ppap", lab_tls, tmp_path)).events
    contents = [e for e in ev if e.key == "smtp.data.content" and e.panel == 2]
    assert len(contents) == 2  # both mails took the same relay hop
    assert any("application/zip" in e.text for e in contents)
    assert any("Mf7-kT2q" in e.text for e in contents)
    read = find(ev, "ppap.read")[0]
    assert "password: Mf7-kT2q" in read.text and "1,200,000 yen" in read.text
    assert sum(e.key == "maildir.deliver" for e in ev) == 2


# -- the summary card and the actors, for every scenario ------------------------------
def sessions_of(events: tuple[Event, ...]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for e in events:
        found.setdefault(e.session, []).append(e)
    return found


@pytest.mark.parametrize("slug", sorted(SCENARIOS))
async def test_summary_rows_are_real_sessions(slug: str, lab_tls: LabTLS, tmp_path: Path) -> None:
    from app.web.flow_view import actor_role, hops

    ev = (await record(slug, lab_tls, tmp_path)).events
    real = set()
    for lines in sessions_of(ev).values():
        said = [e for e in lines if e.direction == "c2s"]
        if not said:
            continue
        first = said[0]
        tls = any(e.tls for e in lines)
        real.add((first.panel, first.src, first.dst, first.protocol, first.port, tls))
    rows = hops(ev)
    assert rows
    for row in rows:
        key = (row.panel, row.client, row.server, row.protocol, row.port, row.tls)
        assert key in real, f"{slug}: {row} is no session of the recording"
        assert not row.server.startswith("mailbox") and not row.client.startswith("mailbox")
        if row.panel == 4:
            assert actor_role(row.client) == "MUA", row
    # Every real session has its row.
    assert real == {(r.panel, r.client, r.server, r.protocol, r.port, r.tls) for r in rows}


async def test_each_account_has_its_own_mailbox(lab_tls: LabTLS, tmp_path: Path) -> None:
    from app.web.flow_view import actor_label

    ev = (await record("bcc-envelope", lab_tls, tmp_path)).events
    boxes = [e.dst for e in find(ev, "maildir.deliver")]
    assert boxes == ["mailbox:bob@b.example", "mailbox:carol@b.example", "mailbox:dave@b.example"]
    assert [actor_label(b, "ja") for b in boxes] == [
        "ボブのメールボックス",
        "キャロルのメールボックス",
        "デイブのメールボックス",
    ]
    removed = find(ev, "maildir.remove")
    assert {e.src for e in removed} == {"mailbox:carol@b.example", "mailbox:dave@b.example"}
    # The bounce lands in Alice's mailbox, and her IMAP session reads from it.
    ev = (await record("unknown-recipient", lab_tls, tmp_path)).events
    bounce = find(ev, "maildir.deliver")[0]
    assert bounce.dst == "mailbox:alice@a.example" and bounce.src == "mda-a"
    assert actor_label(bounce.dst, "ja") == "アリスのメールボックス"
    assert actor_label(bounce.dst, "en") == "Alice's mailbox"
    assert all(e.src == "mailbox:alice@a.example" for e in find(ev, "maildir.state"))
    # An account the content does not name still gets a truthful label.
    assert actor_label("mailbox:zoe@b.example", "en") == "Mailbox of zoe@b.example"


async def test_bcc_leaves_no_trace_in_the_other_copies(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("bcc-envelope", lab_tls, tmp_path)).events
    carol = next(e for e in ev if e.key == "pop3.retr.ok" and e.dst == "mua-carol")
    assert "dave" not in carol.text.lower()
    copy = retrieved(carol)
    assert copy["Delivered-To"] == "carol@b.example" and copy["Cc"] == "carol@b.example"
    # Dave's own copy names him only in the trace fields of his delivery.
    dave = retrieved(next(e for e in ev if e.key == "pop3.retr.ok" and e.dst == "mua-dave"))
    assert dave["Delivered-To"] == "dave@b.example"
    assert any("for <dave@b.example>" in r for r in dave.get_all("Received"))
    for lang in LANGS:
        text = SCENARIOS["bcc-envelope"].text("intro", lang)
        assert "nowhere in the header" not in text and "ヘッダに自分の名前がない" not in text


@pytest.mark.parametrize("slug", sorted(SCENARIOS))
async def test_mail_programs_connect_from_the_home_network(
    slug: str, lab_tls: LabTLS, tmp_path: Path
) -> None:
    from app.world.network import HOME_IP

    ev = (await record(slug, lab_tls, tmp_path)).events
    pattern = r"Received: from alice-laptop\.a\.example \(\[([^\]]+)\]\)"
    peers = [(e.seq, peer) for e in ev for peer in re.findall(pattern, e.text)]
    # Every story where a mail of Alice's is relayed shows the MSA's Received line.
    assert peers or not any(a.do == "relay" for a in SCENARIOS[slug].actions)
    for seq, peer in peers:
        assert peer == HOME_IP, (slug, seq, peer)


async def test_mx_fallback_connection_notes_are_port_25(lab_tls: LabTLS, tmp_path: Path) -> None:
    ev = (await record("mx-fallback", lab_tls, tmp_path)).events
    for key in ("relay.connect_failed", "relay.next_mx"):
        note = find(ev, key)[0]
        assert note.protocol == "TCP" and note.port == 25, note


# -- what the scenarios and explanations teach -------------------------------------------
def test_op25b_defines_ip25b_as_refusing_other_isps_dynamic_ranges() -> None:
    summary = SCENARIOS["op25b"].summary
    assert "他のプロバイダの動的 IP アドレス" in summary["ja"] and "25 番" in summary["ja"]
    assert "other ISPs' dynamic address ranges" in summary["en"]
    assert "server-to-server mail on port 25 is not blocked" in summary["en"]
    assert "外部から自網の 25 番への通信を止める" not in summary["ja"]
    assert "inbound port 25 from outside" not in summary["en"]


def test_auth_failure_says_the_password_leaked() -> None:
    from app.explanations import default_catalog

    s = SCENARIOS["auth-failure"].summary
    assert "漏れた" in s["ja"] and "変更" in s["ja"] and "EHLO の応答に AUTH が出るまで" in s["ja"]
    assert "leaked" in s["en"] and "changed" in s["en"]
    assert "never sends AUTH before the EHLO reply advertises it" in s["en"]
    exp = default_catalog().entries["smtp.auth.538"].text
    assert "漏れた" in exp["ja"] and "変更" in exp["ja"]
    assert "leaked" in exp["en"] and "advertises" in exp["en"]


def test_smime_protects_the_body_only() -> None:
    from app.explanations import default_catalog

    texts = [*SCENARIOS["smime"].summary.values()]
    texts += [*default_catalog().entries["smime.encrypt"].text.values()]
    for text in texts:
        assert "servers need it to deliver" not in text and "配送に必要" not in text
    assert "header protection" in texts[1] and "envelope" in texts[1]
    assert "ヘッダ保護" in texts[0] and "封筒" in texts[0]
    assert "header protection" in texts[3] and "ヘッダ保護" in texts[2]


def test_exam_words() -> None:
    assert "送信ドメイン認証" in SCENARIOS["spoofing"].summary["ja"]
    assert "送信ドメイン認証" in SCENARIOS["spoofing"].title["ja"]
    for lang in LANGS:
        assert "submissions" in SCENARIOS["tls-ports"].summary[lang]
        assert "SMTPS" in SCENARIOS["tls-ports"].summary[lang]


async def test_dmarc_reject_has_its_own_explanation(lab_tls: LabTLS, tmp_path: Path) -> None:
    from app.explanations import default_catalog

    ev = (await record("spoofing", lab_tls, tmp_path)).events
    reject = next(e for e in ev if e.text.startswith("550 5.7.1"))
    assert reject.key == "dmarc.reject"
    catalog = default_catalog()
    assert catalog.lookup("dmarc.reject").rfc == "RFC 7489 §10.3"
    # Any other 550 after DATA is not explained as DMARC.
    generic = catalog.lookup("smtp.data.end.550").text
    assert "DMARC" not in generic["ja"] + generic["en"]
    # Each TXT lookup cites the standard it belongs to.
    cited = {e.key: catalog.lookup(e.key).rfc for e in ev if e.key.startswith("dns.query.txt")}
    assert cited == {
        "dns.query.txt": "RFC 7208 §4.4",
        "dns.query.txt.dkim": "RFC 6376 §3.6.2.2",
        "dns.query.txt.dmarc": "RFC 7489 §6.1",
    }


async def test_explanations_cite_the_protocol_of_their_session(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    from app.explanations import default_catalog
    from app.web.flow_view import explain

    catalog = default_catalog()
    ev = (await record("tls-ports", lab_tls, tmp_path)).events
    handshakes = {e.port: explain(catalog, e).rfc for e in ev if e.key == "tls.handshake"}
    assert handshakes == {
        587: "RFC 3207 §6",
        465: "RFC 8314 §3",
        995: "RFC 8314 §3",
        143: "RFC 9051 §6.2.1",
        993: "RFC 8314 §3",
        25: "RFC 3207 §6",
    }
    stls = find((await record("basic-pop3", lab_tls, tmp_path)).events, "tls.handshake")
    assert [explain(catalog, e).rfc for e in stls if e.port == 110] == ["RFC 2595 §4"]
    ev = (await record("imap-two-devices", lab_tls, tmp_path)).events
    removed = find(ev, "maildir.remove")[0]
    assert removed.protocol == "IMAP" and explain(catalog, removed).rfc == "RFC 3501 §6.4.3"
    ev = (await record("pop3-keep", lab_tls, tmp_path)).events
    state = find(ev, "maildir.state")[0]
    assert explain(catalog, state).rfc == "RFC 1939 §6"
    for e in ev:
        assert "RFC 1939" not in explain(catalog, e).rfc or e.protocol == "POP3", e


def test_pop_before_smtp_is_not_attributed_to_an_rfc() -> None:
    from app.explanations import default_catalog

    entry = default_catalog().entries["popbsmtp.open"]
    assert entry.rfc != "RFC 4954 §1"
    assert "No RFC defines" in entry.text["en"] and "定めたRFCはなく" in entry.text["ja"]
    assert "今はSMTP-AUTHです" not in entry.text["ja"]
    summary = SCENARIOS["pop-before-smtp"].summary
    assert "定めた RFC はありません" in summary["ja"] and "defined by no RFC" in summary["en"]


APP_NOTES = {
    "op25b": ("firewall.block.25", "firewall.pass.587"),
    "pop-before-smtp": ("popbsmtp.open",),
    "unknown-recipient": ("dsn.create",),
    "mime-attachment": ("mime.base64.decode",),
    "smime": ("smime.encrypt", "smime.decrypt", "smime.verify"),
    "ppap": ("ppap.read",),
    "send-hold": ("hold.queued", "hold.cancel", "hold.cancelled"),
}
JAPANESE = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff]")


@pytest.mark.parametrize("slug", sorted(APP_NOTES))
async def test_notes_the_app_writes_are_localized(
    slug: str, lab_tls: LabTLS, tmp_path: Path
) -> None:
    from app.notes import localized

    ev = (await record(slug, lab_tls, tmp_path)).events  # recorded in English
    for key in APP_NOTES[slug]:
        notes = find(ev, key)
        assert notes, key
        for e in notes:
            ja = localized(e, "ja")
            assert localized(e, "en") == e.text, key
            # Every line of the Japanese note is the app's sentence in Japanese, except the
            # lines that are only values (bits, a body, a Base64 line).
            assert JAPANESE.search(ja.splitlines()[0]) and ja != e.text, (key, ja)


# -- SG themes: DNSBL, lookalike domain, RLO -------------------------------------------
async def test_dnsbl_refuses_the_listed_home_address_and_takes_the_clean_one(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    ev = (await record("dnsbl", lab_tls, tmp_path)).events
    bot = [e for e in ev if "host-bot" in (e.src, e.dst)]
    # The MX asked the blocklist zone for the reversed address, in the simulated DNS.
    queries = find(ev, "dnsbl.query")
    assert queries[0].text == "77.100.51.198.bl.example. IN A ?"
    assert queries[0].src == "mta-b" and queries[0].protocol == "DNS"
    assert find(ev, "dnsbl.answer.listed")[0].text.endswith("IN A 127.0.0.2")
    refusal = next(e for e in bot if e.direction == "s2c" and e.key == "smtp.mail.554")
    assert refusal.text.startswith("554 5.7.1 Service unavailable; Client host [198.51.100.77]")
    assert "blocked using bl.example" in refusal.text and refusal.src == "mta-b"
    assert refusal.seq > find(ev, "dnsbl.answer.txt")[0].seq
    assert not [e for e in bot if e.key == "smtp.mail.250"]
    # mail.a.example (192.0.2.10) is not listed: NXDOMAIN, then 250 at MAIL and DATA.
    assert queries[1].text == "10.2.0.192.bl.example. IN A ?"
    clean = find(ev, "dnsbl.answer.clean")
    assert len(clean) == 1 and "NXDOMAIN" in clean[0].text
    relay = [e for e in ev if "mta-a" in (e.src, e.dst) and e.protocol == "SMTP"]
    assert any(e.key == "smtp.mail.250" for e in relay)
    assert any(e.key == "smtp.data.end.250" for e in relay)
    assert find(ev, "maildir.deliver")


async def test_dnsbl_is_off_unless_the_scenario_turns_it_on(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    ev = (await record("basic-pop3", lab_tls, tmp_path)).events
    assert not [e for e in ev if e.key.startswith("dnsbl.")]


async def test_lookalike_domain_passes_spf_dkim_dmarc_for_itself(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    ev = (await record("lookalike-domain", lab_tls, tmp_path)).events
    keys = [e.key for e in ev]
    assert {"spf.result.pass", "dkim.result.pass", "dmarc.result.pass"} <= set(keys)
    assert not [k for k in keys if k.endswith(".fail")]
    sign = find(ev, "dkim.sign.own")[0]
    assert "d=a-example.example" in sign.text
    accepted = next(e for e in ev if e.key == "smtp.data.end.250" and e.dst == "mta-lookalike")
    assert accepted.src == "mta-b"
    msg = retrieved(find(ev, "imap.fetch.ok")[-1])
    results = " ".join(str(msg["Authentication-Results"]).split())
    assert "spf=pass smtp.mailfrom=alice@a-example.example" in results
    assert "dkim=pass header.d=a-example.example" in results
    assert "dmarc=pass header.from=a-example.example" in results
    assert msg["From"].addresses[0].display_name == "Alice"


@pytest.mark.parametrize(
    ("lang", "shown"), [("en", "invoice_exe.pdf"), ("ja", "請求書_exe.pdf")]
)
async def test_rlo_name_travels_rfc2231_encoded_and_displays_reversed(
    lab_tls: LabTLS, tmp_path: Path, lang: str, shown: str
) -> None:
    rec = await run_scenario(SCENARIOS["rlo-attachment"], lab_tls, tmp_path / "runs", lang)
    ev = rec.events
    sent = find(ev, "smtp.data.content")[0].text
    assert "%E2%80%AEfdp.exe" in sent and "filename*=utf-8''" in sent
    assert "\u202e" not in sent  # on the wire the override is only ever percent-encoded
    msg = retrieved(find(ev, "pop3.retr.ok")[0])
    part = next(p for p in msg.walk() if p.get_filename())
    assert part.get_filename().endswith("\u202efdp.exe")
    note = find(ev, "mua.attachment.name.rlo")[0]
    assert note.src == "mua-bob" and note.panel == 4
    assert "%E2%80%AE" in note.text and "[U+202E]fdp.exe" in note.text
    assert shown in note.text and ".exe" in note.text.splitlines()[-1]
    label = "メールソフトの表示" if lang == "ja" else "the mail program shows"
    assert f"{label}: {shown}" in note.text


async def test_send_hold_keeps_the_mail_queued_and_cancelling_removes_it(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    ev = (await record("send-hold", lab_tls, tmp_path)).events
    held = find(ev, "hold.queued")
    assert len(held) == 2 and "to carol@b.example" in held[0].text and "300 s" in held[0].text
    wrong_qid = held[0].text.split()[0]
    # The relaying MTA looked at once and left it; the sender cancelled it.
    waiting = find(ev, "hold.waiting")[0]
    assert waiting.text.startswith(f"{wrong_qid} still held")
    cancelled = find(ev, "hold.cancelled")[0]
    assert cancelled.text.startswith(f"{wrong_qid} removed") and cancelled.src == "msa-a"
    assert waiting.seq < cancelled.seq
    # Only Bob's mail went out, after the hold: Carol's was never relayed nor delivered.
    relay_rcpts = [e.text for e in ev if e.key == "smtp.rcpt" and e.panel == 2]
    assert relay_rcpts == ["RCPT TO:<bob@b.example>"]
    assert not [e for e in ev if "carol@b.example" in e.text and e.panel in (2, 3)]
    assert len(find(ev, "maildir.deliver")) == 1
    assert find(ev, "smtp.mail")[-1].seq > held[1].seq


def test_send_hold_rule_on_its_own_clock(tmp_path: Path) -> None:
    from app.world.send_hold import SendHold
    from app.world.spool import QueuedMail, Spool

    events: list[Event] = []
    spool = Spool(tmp_path / "q")
    hold = SendHold(300, events.append, clock=lambda: 1000.0)
    entry = QueuedMail("Q1", "alice@a.example", ("carol@b.example",), b"x\r\n")
    spool.put("alice@a.example", ["carol@b.example"], b"x\r\n", "Q1")
    hold.queued(entry)
    assert not hold.ready(entry, "mta-a")
    hold.advance(299)
    assert not hold.ready(entry, "mta-a")
    hold.advance(1)
    assert hold.ready(entry, "mta-a")  # the hold is over: the MTA may send it now
    # Too late to cancel once it is released: nothing is removed.
    assert hold.cancel(spool, "carol@b.example", "mua-alice") is None
    assert [e.key for e in events][-1] == "hold.too_late"
    assert [m.qid for m in spool.entries()] == ["Q1"]

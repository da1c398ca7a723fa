"""Every protocol line the engines emit has an explanation in both languages."""

from __future__ import annotations

import re

import pytest

from app.explanations import LANGS, Catalog

SMTP_KEYS = """
smtp.greeting.220 smtp.ehlo smtp.ehlo.250 smtp.helo smtp.helo.250 smtp.starttls
smtp.starttls.220 smtp.auth smtp.auth.response smtp.auth.334 smtp.auth.235 smtp.auth.535
smtp.auth.538 smtp.auth.503 smtp.auth.504 smtp.mail smtp.mail.250 smtp.mail.530
smtp.mail.503 smtp.rcpt smtp.rcpt.250 smtp.rcpt.550 smtp.rcpt.554 smtp.rcpt.503 smtp.data
smtp.data.354 smtp.data.content smtp.data.end smtp.data.end.250 smtp.data.end.552
smtp.data.503 smtp.quit smtp.quit.221 smtp.rset smtp.rset.250 smtp.noop smtp.noop.250
smtp.vrfy smtp.vrfy.252 smtp.help smtp.unknown smtp.reply.500 smtp.reply.501
smtp.reply.502 smtp.reply.503 smtp.reply.421 smtp.reply.450 smtp.reply.451 smtp.reply.452
smtp.reply.550 smtp.reply.551 smtp.reply.552 smtp.reply.553 smtp.reply.554 smtp.reply.2xx
smtp.reply.3xx smtp.reply.4xx smtp.reply.5xx
"""

LMTP_KEYS = """
lmtp.greeting.220 lmtp.lhlo lmtp.lhlo.250 lmtp.data.end.250 lmtp.mail lmtp.rcpt
lmtp.data.content
"""

DNS_KEYS = """
dns.query.mx dns.answer.mx dns.answer.nomx dns.query.a dns.answer.a dns.answer.nxdomain
relay.unreachable relay.connect_failed
"""

TLS_KEYS = "tls.handshake"

MAILDIR_KEYS = "maildir.deliver maildir.remove maildir.flags maildir.state"

POP3_KEYS = """
pop3.greeting pop3.capa pop3.capa.ok pop3.stls pop3.stls.ok pop3.stls.err pop3.user
pop3.user.ok pop3.pass pop3.pass.ok pop3.pass.err pop3.apop pop3.apop.ok pop3.apop.err
pop3.auth pop3.auth.continue pop3.auth.response pop3.auth.ok pop3.auth.err pop3.stat
pop3.stat.ok pop3.list pop3.list.ok pop3.retr pop3.retr.ok pop3.dele pop3.dele.ok
pop3.rset pop3.rset.ok pop3.noop pop3.noop.ok pop3.top pop3.top.ok pop3.uidl pop3.uidl.ok
pop3.quit pop3.quit.ok pop3.unknown pop3.unknown.err pop3.reply.ok pop3.reply.err
"""

IMAP_KEYS = """
imap.greeting imap.capability imap.capability.ok imap.starttls imap.starttls.ok
imap.login imap.login.ok imap.login.no imap.authenticate imap.authenticate.ok
imap.auth.response imap.continue imap.select imap.select.ok imap.examine imap.examine.ok
imap.list imap.list.ok imap.lsub imap.status imap.status.ok imap.create imap.delete
imap.rename imap.subscribe imap.unsubscribe imap.namespace imap.id imap.enable
imap.append imap.append.ok imap.fetch imap.fetch.ok imap.uid_fetch imap.uid_fetch.ok
imap.store imap.store.ok imap.uid_store imap.search imap.search.ok imap.uid_search
imap.copy imap.move imap.uid_move imap.expunge imap.expunge.ok imap.uid_expunge
imap.close imap.unselect imap.check imap.noop imap.noop.ok imap.idle imap.idle.ok
imap.done imap.push.exists imap.push.expunge imap.push.fetch imap.logout imap.logout.ok
imap.bye imap.unknown imap.unknown.bad imap.reply.ok imap.reply.no imap.reply.bad
"""

_ALL_BLOCKS = (SMTP_KEYS, LMTP_KEYS, DNS_KEYS, TLS_KEYS, MAILDIR_KEYS, POP3_KEYS, IMAP_KEYS)
_LISTED = [key for block in _ALL_BLOCKS for key in block.split()]
REQUIRED_KEYS = sorted(set(_LISTED))

RFC_FORM = re.compile(r"^RFC \d+ §[\w.]+$")
# Hiragana, katakana and CJK ideographs.
JAPANESE = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff]")
PLACEHOLDERS = ("TODO", "FIXME", "XXX", "TBD", "...")
MAX_LEN = {"ja": 125, "en": 310}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_required_keys_are_listed_once() -> None:
    assert len(_LISTED) == len(REQUIRED_KEYS) == 185


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_key_has_its_own_entry(catalog: Catalog, key: str) -> None:
    entry = catalog.entries.get(key)
    assert entry is not None, f"no explanation for {key}"
    assert RFC_FORM.match(entry.rfc), f"{key}: rfc {entry.rfc!r} is not 'RFC NNNN §x.y'"
    assert entry.rfc_url.startswith("https://www.rfc-editor.org/rfc/rfc")
    assert "#section-" in entry.rfc_url
    for lang in LANGS:
        assert entry.text[lang], f"{key}: empty {lang} text"


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_lookup_finds_the_exact_entry(catalog: Catalog, key: str) -> None:
    found = catalog.lookup(key)
    assert found is not None
    assert found.key == key


def test_every_entry_is_well_formed(catalog: Catalog) -> None:
    problems = []
    for key, entry in catalog.entries.items():
        if not RFC_FORM.match(entry.rfc) or not entry.rfc_url:
            problems.append(f"{key}: rfc {entry.rfc!r}")
        if not JAPANESE.search(entry.text["ja"]):
            problems.append(f"{key}: ja text has no Japanese")
        # English may quote a Japanese exam term, but must not be Japanese prose.
        if len(JAPANESE.findall(entry.text["en"])) > 10:
            problems.append(f"{key}: en text looks Japanese")
        for lang in LANGS:
            text = entry.text[lang]
            if not text:
                problems.append(f"{key}: empty {lang}")
            if len(text) > MAX_LEN[lang]:
                problems.append(f"{key}: {lang} text is {len(text)} characters")
            for mark in PLACEHOLDERS:
                if mark in text:
                    problems.append(f"{key}: {lang} contains placeholder {mark!r}")
    assert not problems, "\n".join(problems)


def test_fallback_chain_reaches_content(catalog: Catalog) -> None:
    # An unknown reply code is still explained by its class.
    assert catalog.lookup("smtp.rcpt.559").key == "smtp.reply.5xx"
    assert catalog.lookup("smtp.ehlo.421").key == "smtp.reply.421"
    # LMTP lines without their own entry use SMTP's.
    assert catalog.lookup("lmtp.rcpt.250").key == "smtp.rcpt.250"
    assert catalog.lookup("lmtp.quit.221").key == "smtp.quit.221"
    assert catalog.lookup("lmtp.lhlo.250").key == "lmtp.lhlo.250"
    assert catalog.lookup("pop3.stat.err").key == "pop3.reply.err"
    assert catalog.lookup("imap.select.no").key == "imap.reply.no"


def test_key_facts_are_taught(catalog: Catalog) -> None:
    def text(key: str) -> str:
        entry = catalog.entries[key]
        return entry.text["ja"] + "\n" + entry.text["en"]

    # DELE only marks; QUIT (UPDATE state) removes.
    assert "UPDATE" in text("pop3.dele") and "QUIT" in text("pop3.dele")
    assert "UPDATE" in text("pop3.quit.ok")
    # RETR never deletes.
    assert "never deletes" in text("pop3.retr")
    # AUTH PLAIN is Base64, not encryption.
    assert "Base64" in text("smtp.auth") and "not encryption" in text("smtp.auth")
    # Bcc lives only in the envelope.
    assert "Bcc" in text("smtp.rcpt")
    # IMAP flags live on the server; deleting takes STORE \Deleted then EXPUNGE.
    assert "server" in text("imap.store.ok") and "EXPUNGE" in text("imap.store.ok")
    assert "\\Deleted" in text("imap.expunge")
    # IMAP never sends mail.
    assert "SMTP" in text("imap.append")
    # Implicit TLS is preferred (RFC 8314).
    for key in ("smtp.starttls", "pop3.stls", "imap.starttls"):
        assert "8314" in text(key), key
    # Open relay refusal.
    assert "第三者中継" in text("smtp.rcpt.554")
    # RFC 4954 codes are cited from RFC 4954.
    for key in ("smtp.auth.235", "smtp.auth.535", "smtp.auth.538", "smtp.mail.530"):
        assert catalog.entries[key].rfc.startswith("RFC 4954 "), key

"""SMTP/LMTP behaviour seen in a whole scenario run (real engines, real clients):
the bcc-envelope scenario's delivery is one LMTP transaction answered per recipient
(RFC 2033 §4.2), and BODY=8BITMIME travels with the mail over every hop (RFC 6152)."""

from __future__ import annotations

from pathlib import Path

from app.engines.tls import LabTLS
from app.explanations import Catalog
from app.scenarios.model import load_all
from app.scenarios.runner import run_scenario

RCPTS = ["bob@b.example", "carol@b.example", "dave@b.example"]


async def test_bcc_envelope_delivers_in_one_lmtp_transaction_with_a_reply_each(
    lab_tls: LabTLS, tmp_path: Path
) -> None:
    # Japanese text: the MUA submits with BODY=8BITMIME.
    rec = await run_scenario(load_all()["bcc-envelope"], lab_tls, tmp_path, "ja")
    lmtp = [e for e in rec.events if e.protocol == "LMTP"]
    client = [e.text for e in lmtp if e.direction == "c2s"]
    assert client.count("DATA") == 1 and client.count(".") == 1
    assert [t for t in client if t.startswith("RCPT")] == [f"RCPT TO:<{r}>" for r in RCPTS]
    end = next(i for i, e in enumerate(lmtp) if e.direction == "c2s" and e.text == ".")
    replies = [e for e in lmtp[end + 1 :] if e.direction == "s2c"][:3]
    assert [e.key for e in replies] == ["lmtp.data.end.250"] * 3
    assert [e.text.split()[:3] for e in replies] == [["250", "2.0.0", f"<{r}>"] for r in RCPTS]
    notes = [e.detail["mailbox"] for e in rec.events if e.key == "maildir.deliver"]
    assert notes == RCPTS
    # BODY=8BITMIME on the submission, the relay hop (port 25) and the LMTP hop alike.
    mails = {
        (e.protocol, e.port): e.text
        for e in rec.events
        if e.direction == "c2s" and e.text.startswith("MAIL FROM")
    }
    assert mails == {
        ("SMTP", 587): "MAIL FROM:<alice@a.example> BODY=8BITMIME",
        ("SMTP", 25): "MAIL FROM:<alice@a.example> BODY=8BITMIME",
        ("LMTP", 24): "MAIL FROM:<alice@a.example> BODY=8BITMIME",
    }
    # The EHLO/LHLO replies offer ENHANCEDSTATUSCODES and are explained as they read:
    # no PIPELINING on the scenario servers, so not the key that talks about it.
    catalog = Catalog.load()
    hellos = [e for e in rec.events if e.key.split(".")[1:2] in (["ehlo"], ["lhlo"])]
    hellos = [e for e in hellos if e.direction == "s2c"]
    assert hellos and all("250-ENHANCEDSTATUSCODES" in e.text for e in hellos)
    for e in hellos:
        assert "PIPELINING" not in e.text and not e.key.endswith(".pipelining")
        shown = catalog.lookup(e.key)
        assert shown is not None and "ENHANCEDSTATUSCODES" in shown.text["ja"]
        assert "PIPELINING" not in shown.text["en"]

"""The MUA's layout of attachment names with bidi controls (app/mua/filenames.py)."""

from __future__ import annotations

from app.engines.dnsbl import is_listed_answer, query_name
from app.mua.filenames import displayed, visible


def test_rlo_reverses_what_follows_it() -> None:
    assert displayed("invoice_\u202efdp.exe") == "invoice_exe.pdf"
    assert displayed("photo_\u202egnp.scr") == "photo_rcs.png"


def test_pdf_ends_the_override_and_plain_names_are_unchanged() -> None:
    assert displayed("a\u202ecba\u202cz.txt") == "aabcz.txt"
    assert displayed("report.pdf.exe") == "report.pdf.exe"


def test_visible_writes_controls_out() -> None:
    assert visible("x\u202ey") == "x[U+202E]y"


def test_dnsbl_names_and_answers() -> None:
    assert query_name("198.51.100.23", "bl.example") == "23.100.51.198.bl.example"
    assert is_listed_answer("127.0.0.2") and not is_listed_answer("192.0.2.1")
    assert not is_listed_answer("not-an-address")

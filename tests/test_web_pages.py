"""The pages, over real HTTP against the real app (uvicorn on loopback)."""

from __future__ import annotations

import re

import httpx
import pytest

from app.events import Event
from app.explanations import Catalog
from app.web import i18n
from app.web.templating import make_templates


@pytest.fixture
def http(live_url: str):
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


def test_home_says_what_it_is_and_links_both_scenarios(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200
    assert '<html lang="ja">' in r.text
    assert "MailFlow Lab" in r.text
    assert 'href="/flow/basic-pop3"' in r.text and 'href="/flow/basic-imap"' in r.text
    assert "POP3 で受信" in r.text and "IMAP で受信" in r.text


@pytest.mark.parametrize("slug", ["basic-pop3", "basic-imap"])
def test_flow_page_has_the_stage_log_and_controls(http: httpx.Client, slug: str) -> None:
    r = http.get(f"/flow/{slug}")
    assert r.status_code == 200
    # The stage replaces the four panels: a full and a compact one, each with the actors
    # of the journey and its four regions, the protocols and ports on them.
    assert r.text.count("<svg") >= 2 and 'data-stage="full"' in r.text
    assert 'data-stage="compact"' in r.text
    for actor in ("mua-alice", "msa-a", "dns", "mta-b", "mda-b", "mua-bob"):
        assert f'data-actor="{actor}"' in r.text
    assert len(set(re.findall(r'data-region="(\d)"', r.text))) == 4
    assert "SMTP · 587 · TLS" in r.text
    # role=log wraps the list, so the list stays a list.
    assert re.search(r'<div class="log-wrap" role="log"[^>]*>\s*<ol id="log" class="log">', r.text)
    assert r.text.count('<li class="ev') == 0
    for label in ("次へ", "戻る", "再生", "最初から"):
        assert f">{label}" in r.text or f"{label}<" in r.text or f"{label} " in r.text
    total = int(re.search(r'data-total="(\d+)"', r.text).group(1))
    assert f"0 / {total}" in r.text


def test_step_parameter_reveals_that_many_lines(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?step=5")
    assert r.text.count('<li class="ev') == 5
    # The current line is marked, and the stage's hop for it (MUA → MSA).
    assert re.search(r'<li [^>]*id="ev-5"[^>]*aria-current="step"', r.text)
    assert r.text.count('aria-current="step"') == 1
    assert re.search(r'data-link="mua-alice--msa-a"[^>]*aria-current="true"', r.text)
    # Past the end: the whole run, summary shown.
    r = http.get("/flow/basic-pop3?step=99999")
    total = int(re.search(r'data-total="(\d+)"', r.text).group(1))
    assert r.text.count('<li class="ev') == total
    assert '<section id="summary" class="summary" aria-labelledby="summary-h">' in r.text


def test_bad_step_is_a_clear_400(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?step=abc")
    assert r.status_code == 400
    assert "?step=5" in r.text and "整数" in r.text
    r = http.get("/flow/basic-pop3?step=-1&lang=en")
    assert r.status_code == 400 and "whole number" in r.text


def test_unknown_slug_is_a_404_page_in_the_chosen_language(http: httpx.Client) -> None:
    r = http.get("/flow/no-such-thing")
    assert r.status_code == 404 and "見つかりません" in r.text
    r = http.get("/flow/no-such-thing?lang=en")
    assert r.status_code == 404 and "There is no such page" in r.text


def test_english_is_remembered_in_a_cookie(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=30) as c:
        r = c.get("/?lang=en")
        assert r.cookies.get("lang") == "en" and '<html lang="en">' in r.text
        r = c.get("/flow/basic-imap")
        assert "Receive with IMAP" in r.text and ">Next" in r.text


def test_the_language_comes_from_the_query_then_the_cookie_and_only_a_known_one_is_kept(
    live_url: str,
) -> None:
    with httpx.Client(base_url=live_url, timeout=30) as c:
        r = c.get("/?lang=fr")  # not a language of the site: Japanese, nothing remembered
        assert '<html lang="ja">' in r.text and "set-cookie" not in r.headers
        r = c.get("/no-such-page?lang=en&x=1")  # error pages too, and the choice is kept
        assert r.status_code == 404 and "There is no such page" in r.text
        assert r.headers.get_list("set-cookie") == [
            "lang=en; Max-Age=31536000; Path=/; SameSite=lax"
        ]
        r = c.get("/no-such-page")  # from the cookie now
        assert "There is no such page" in r.text and "set-cookie" not in r.headers
        r = c.get("/?lang=ja")  # an explicit choice wins over the cookie
        assert '<html lang="ja">' in r.text and c.cookies.get("lang") == "ja"


def test_healthz(http: httpx.Client) -> None:
    r = http.get("/healthz")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok"
    assert set(body["engines"]) == {"submission", "mx-b", "lmtp-b", "pop3-b", "imap-b"}
    assert all(v == "ok" for v in body["engines"].values())


def test_no_external_resources(http: httpx.Client) -> None:
    html = http.get("/flow/basic-pop3?step=3").text
    for url in re.findall(r"\s(?:src|href)=\"([^\"]+)\"", html):
        # Only links to RFC text leave the site, and those are plain links, never loaded.
        assert url.startswith(("/", "#", "http://127.0.0.1", "https://www.rfc-editor.org/")), url
    assert "rfc-editor" not in "".join(re.findall(r'src="([^"]+)"', html))


def test_mail_text_is_always_escaped() -> None:
    templates = make_templates()
    event = Event(
        seq=1,
        session="s1",
        panel=1,
        src="mua-alice",
        dst="msa-a",
        protocol="SMTP",
        port=587,
        tls=True,
        direction="c2s",
        text="Subject: <script>alert(1)</script>",
        key="smtp.data.content",
        detail={"decoded": "␀<b>x</b>␀pw"},
    )
    token = i18n.current_lang.set("ja")
    try:
        html = templates.get_template("_event.html").render(
            event=event, step=1, catalog=Catalog.load()
        )
    finally:
        i18n.current_lang.reset(token)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_a_note_the_app_writes_is_shown_in_the_page_language(http: httpx.Client) -> None:
    # Step 1 of op25b: the ISP firewall drops Alice's connection to port 25.
    ja = http.get("/flow/op25b?step=1&lang=ja").text
    assert "DROP tcp 198.51.100.23 -&gt; 192.0.2.20:25" in ja
    assert "動的 IP アドレスから外部の 25 番への接続は遮断" in ja
    assert "dynamic address to port 25" not in ja
    en = http.get("/flow/op25b?step=1&lang=en").text
    assert "(OP25B: dynamic address to port 25)" in en and "遮断" not in en.split('id="log"')[1]


@pytest.mark.parametrize("slug", ["dnsbl", "lookalike-domain", "rlo-attachment", "send-hold"])
def test_sg_scenario_pages_show_every_line_in_both_languages(
    http: httpx.Client, slug: str
) -> None:
    from app.scenarios.model import load_all

    scenario = load_all()[slug]
    for lang in ("ja", "en"):
        r = http.get(f"/flow/{slug}?step=99999&lang={lang}")
        assert r.status_code == 200
        assert scenario.title[lang] in r.text
        total = int(re.search(r'data-total="(\d+)"', r.text).group(1))
        assert r.text.count('<li class="ev') == total > 10

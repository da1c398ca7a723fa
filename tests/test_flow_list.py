"""`/flow`: every scenario as a card, filtered by exam topic through plain links."""

from __future__ import annotations

import re

import httpx
import pytest

from app.scenarios.model import Action, load_all
from app.web.scenario_list import protocols


@pytest.fixture
def http(live_url: str):
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


def _cards(html: str) -> list[str]:
    return re.findall(r'<li class="card">\s*<h2><a href="/flow/([a-z0-9-]+)">', html)


def test_every_scenario_is_a_card_with_topics_protocols_and_both_modes(http: httpx.Client) -> None:
    scenarios = load_all()
    r = http.get("/flow")
    assert r.status_code == 200
    assert _cards(r.text) == list(scenarios)  # in the scenarios' own order
    pop3 = scenarios["basic-pop3"]
    assert pop3.title["ja"] in r.text and pop3.intro["ja"][:30] in r.text
    assert "ポート番号" in r.text or "ports" in r.text
    for slug in scenarios:
        assert f'href="/flow/{slug}?mode=predict"' in r.text
    assert '<span class="tag proto">POP3</span>' in r.text


def test_topic_filter_is_a_plain_link_and_keeps_only_matching_cards(http: httpx.Client) -> None:
    scenarios = load_all()
    r = http.get("/flow?topic=envelope&lang=en")
    assert r.status_code == 200
    expected = [s for s, sc in scenarios.items() if "envelope" in sc.topics]
    assert _cards(r.text) == expected
    assert 'href="/flow?topic=envelope" aria-current="page"' in r.text
    assert 'href="/flow"' in r.text  # back to all, without JavaScript


def test_unknown_topic_is_a_clear_400_that_lists_the_real_ones(http: httpx.Client) -> None:
    r = http.get("/flow", params={"topic": "<img src=x>", "lang": "en"})
    assert r.status_code == 400
    assert "There is no exam topic “&lt;img src=x&gt;”" in r.text
    assert "<img src=x>" not in r.text
    assert 'href="/flow?topic=ports"' in r.text
    assert _cards(r.text) == []


def test_home_links_the_list(http: httpx.Client) -> None:
    r = http.get("/")
    assert 'href="/flow"' in r.text
    assert 'href="/flow/basic-pop3"' in r.text


def test_protocols_come_from_the_actions() -> None:
    scenarios = load_all()
    assert protocols(scenarios["basic-pop3"]) == ("DNS", "SMTP", "LMTP", "POP3")
    assert "IMAP" in protocols(scenarios["basic-imap"])
    # An action this module has never heard of is still matched by its name.
    sc = scenarios["basic-pop3"]
    other = type(sc)(**{**sc.__dict__, "actions": (Action("imap_idle_watch"),)})
    assert protocols(other) == ("IMAP",)

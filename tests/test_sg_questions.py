"""The SG themes of the question bank (threats.toml, filtering.toml): the five topic
ids live in the repository, each has original questions in both languages with
every choice explained, IPA punctuation, and links that land on real events."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.scenarios.model import load_all
from app.scenarios.runner import Recording
from app.study.content import QUESTION_DIR, content
from app.web.app import create_app

NEW_TOPICS = ("mail-threats", "attachment-tricks", "spam-filtering", "anti-spam-law", "misdelivery")
FILES = ("threats.toml", "filtering.toml")
JAPANESE = r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e。，「」“”]"


def _new_ids() -> list[str]:
    ids = []
    for name in FILES:
        data = tomllib.loads((QUESTION_DIR / name).read_text("utf-8"))
        ids += [q["id"] for q in data["questions"]]
    return ids


NEW = _new_ids()


def test_the_five_topics_have_names_and_at_least_four_questions_each() -> None:
    c = content()
    for topic in NEW_TOPICS:
        assert c.topics[topic].name["ja"] and c.topics[topic].name["en"], topic
        assert len(c.questions_in(topic)) >= 4, topic


@pytest.mark.parametrize("qid", NEW)
def test_question_is_complete_and_uses_ipa_punctuation(qid: str) -> None:
    q = content().questions[qid]
    assert q.level in ("FE", "SG")
    for lang in ("ja", "en"):
        assert len(q.choices[lang]) == 4 and len(set(q.choices[lang])) == 4
        assert len(q.explanations[lang]) == 4 and all(q.explanations[lang])
    assert q.explanations["ja"][q.answer].startswith("正解")
    assert q.explanations["en"][q.answer].startswith("Correct")
    for text in (q.stem["ja"], *q.choices["ja"]):
        assert "、" not in text, text
        # No half-width space between Japanese and Latin letters or digits.
        assert not re.search(f"{JAPANESE} | {JAPANESE}", text), text


def test_the_key_is_rarely_the_longest_choice() -> None:
    for lang in ("ja", "en"):
        longest = 0
        for qid in NEW:
            q = content().questions[qid]
            n = [len(c) for c in q.choices[lang]]
            longest += all(n[q.answer] > n[i] for i in range(4) if i != q.answer)
        assert longest * 3 <= len(NEW), (lang, longest)


def test_links_name_an_event_the_real_run_records(
    scenario_recording: Callable[[str], Recording],
) -> None:
    linked = 0
    for qid in NEW:
        link = content().questions[qid].link
        if link is None:
            continue
        keys = [e.key for e in scenario_recording(link.scenario).events]
        assert keys.count(link.key) >= link.occurrence, (qid, link)
        linked += 1
    assert linked >= len(NEW) // 2


def test_a_question_without_a_link_loads_and_the_api_says_so(tmp_path: Path) -> None:
    unlinked = [qid for qid in NEW if content().questions[qid].link is None]
    assert "anti-spam-law-01" in unlinked
    with TestClient(create_app(Settings(data_dir=tmp_path, lab=False))) as c:
        law = c.get("/api/exam/questions", params={"topic": "anti-spam-law"}).json()
        assert law["count"] >= 4 and all(q["link"] is None for q in law["questions"])
        dnsbl = c.get("/api/exam/questions", params={"topic": "spam-filtering"}).json()
        assert any(
            (q["link"] or "").startswith("/flow/dnsbl?event=") for q in dnsbl["questions"]
        )
        home = c.get("/quiz/exam", params={"lang": "ja"}).text
        for topic in NEW_TOPICS:
            assert f'name="topic" value="{topic}"' in home
        assert "特定電子メール法" in home and "誤送信対策" in home
        r = c.post(
            "/quiz/exam/start", data={"mode": "topic", "topic": "anti-spam-law"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        page = c.get(r.headers["location"]).text
        qid = re.search(r'name="question" value="([^"]+)"', page).group(1)
        pos = re.search(r'name="position" value="(\d+)"', page).group(1)
        q = content().questions[qid]
        fb = c.post(
            f"{r.headers['location']}/answer",
            data={"position": pos, "question": qid, "choice": str(q.answer)},
        )
        assert fb.status_code == 200 and q.explanations["ja"][q.answer] in fb.text


def test_flow_topic_filter_lists_the_new_scenarios(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, lab=False))) as c:
        for topic, slug in (
            ("spam-filtering", "dnsbl"),
            ("mail-threats", "lookalike-domain"),
            ("attachment-tricks", "rlo-attachment"),
        ):
            page = c.get("/flow", params={"topic": topic, "lang": "ja"})
            assert page.status_code == 200
            cards = re.findall(r'<li class="card">\s*<h2><a href="/flow/([a-z0-9-]+)">', page.text)
            assert slug in cards and all(
                topic in load_all()[s].topics for s in cards
            ), (topic, cards)
        everything = c.get("/flow", params={"lang": "ja"}).text
        assert "スパム対策（DNSBL・ベイジアンフィルタ）" in everything


def test_port_quiz_has_use_cases_from_the_sg_themes() -> None:
    cases = {u.id: u for u in content().usecases}
    assert cases["dnsbl-home-pc"].port == 25 and cases["lookalike-inbound"].port == 25
    assert cases["send-hold-submit"].port == 587
    for uid in ("dnsbl-home-pc", "lookalike-inbound", "send-hold-submit"):
        assert "、" not in cases[uid].text["ja"] and cases[uid].text["en"]

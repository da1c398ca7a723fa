"""The study content: enough original questions, every exam topic covered, both languages,
four choices with one answer and an explanation each, and links to real scenario steps."""

from __future__ import annotations

import asyncio
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from app.engines.tls import LabTLS
from app.scenarios.model import load_all
from app.scenarios.runner import run_scenario
from app.study.content import LANGS, LETTERS, QUIZ_DIR, Link, content

C = content()
TOPICS = {
    "roles",
    "agents",
    "ports",
    "smtp-auth",
    "pop-before-smtp",
    "op25b",
    "apop-pop3s",
    "starttls",
    "sender-auth",
    "e2e-encryption",
    "open-relay",
    "mime",
    "envelope",
    "attachment-password",
    "mail-threats",
    "attachment-tricks",
    "spam-filtering",
    "anti-spam-law",
    "misdelivery",
}


def test_at_least_60_questions_covering_every_topic_three_times() -> None:
    assert len(C.questions) >= 60
    assert set(C.topics) == TOPICS
    counts = Counter(t for q in C.questions.values() for t in q.topics)
    thin = {t: counts[t] for t in TOPICS if counts[t] < 3}
    assert not thin, thin


def test_every_question_is_complete_in_both_languages() -> None:
    for q in C.questions.values():
        assert q.level in ("FE", "SG", "AP"), q.id
        assert 0 <= q.answer < 4, q.id
        for lang in LANGS:
            assert q.stem[lang], (q.id, lang)
            assert len(q.choices[lang]) == 4 and all(q.choices[lang]), (q.id, lang)
            assert len(set(q.choices[lang])) == 4, (q.id, lang, "repeated choice")
            assert len(q.explanations[lang]) == 4 and all(q.explanations[lang]), (q.id, lang)
        # The Japanese explanation of the right choice says so.
        assert q.explanations["ja"][q.answer].startswith("正解"), q.id
        assert q.explanations["en"][q.answer].startswith("Correct"), q.id
        wrong = [e for i, e in enumerate(q.explanations["ja"]) if i != q.answer]
        assert not any(e.startswith("正解") for e in wrong), q.id


def test_answers_are_spread_over_a_to_e() -> None:
    letters = Counter(LETTERS[q.answer] for q in C.questions.values())
    assert all(letters[x] >= len(C.questions) // 6 for x in LETTERS), letters


def test_each_level_is_represented() -> None:
    levels = Counter(q.level for q in C.questions.values())
    assert levels["FE"] >= 15 and levels["SG"] >= 15 and levels["AP"] >= 5, levels


def test_port_cards_and_use_cases() -> None:
    assert sorted(c.port for c in C.cards.values()) == [25, 110, 143, 465, 587, 993, 995]
    assert sorted(d.port for d in C.distractors) == [22, 53, 80, 443]
    for card in C.cards.values():
        for lang in LANGS:
            assert card.explain[lang] and card.mnemonic[lang] and card.label[lang]
        assert any(u.port == card.port for u in C.usecases), card.port
    raw = tomllib.loads((QUIZ_DIR / "ports.toml").read_text("utf-8"))
    assert any("スマホと PC" in u["ja"] and u["port"] == 993 for u in raw["usecases"])


def test_our_mnemonics_are_not_the_source_articles() -> None:
    # Facts carry over from the seed article; its sentences and 語呂合わせ do not.
    seed = (
        "".join(p.read_text("utf-8") for p in Path("/work/shared/seed").glob("*.txt"))
        if Path("/work/shared/seed").exists()
        else ""
    )
    for phrase in ("にこにこ", "こわいな", "J-POP", "九九", "いい読み", "居間"):
        for card in C.cards.values():
            assert phrase not in card.mnemonic["ja"], (card.port, phrase)
        if seed:
            assert phrase in seed  # the list above really is the article's


@pytest.fixture(scope="module")
def scenario_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str] | None]:
    """The event keys of every scenario, from the real runner (None if it cannot run)."""
    tls = LabTLS.load(tmp_path_factory.mktemp("tls"))

    async def run_all() -> dict[str, list[str] | None]:
        out: dict[str, list[str] | None] = {}
        for s in load_all().values():
            try:
                rec = await asyncio.wait_for(
                    run_scenario(s, tls, tmp_path_factory.mktemp(s.slug)), 30
                )
                out[s.slug] = [e.key for e in rec.events]
            except Exception:  # another engineer's engine mid-change: checked when it runs
                out[s.slug] = None
        return out

    return asyncio.run(run_all())


def _links() -> list[tuple[str, Link]]:
    return [(q.id, q.link) for q in C.questions.values() if q.link is not None] + [
        (f"port {c.port}", c.link) for c in C.cards.values()
    ]


def test_links_point_at_existing_scenarios() -> None:
    slugs = set(load_all())
    for owner, link in _links():
        assert link.scenario in slugs, owner
        if link.step is None:  # named by key and occurrence
            assert link.href == f"/flow/{link.scenario}", owner
        else:
            assert link.href == f"/flow/{link.scenario}?step={link.step}"


def test_links_land_on_the_step_they_describe(scenario_keys: dict[str, list[str] | None]) -> None:
    assert any(scenario_keys.values()), "no scenario runs (the runner's own tests say why)"
    checked = 0
    for owner, link in _links():
        keys = scenario_keys.get(link.scenario)
        if keys is None:
            continue
        if link.step is None:
            # The occurrence-th event with this key exists in a real run.
            assert keys.count(link.key) >= link.occurrence, (owner, link)
            checked += 1
            continue
        assert link.step <= len(keys), (owner, link)
        assert keys[link.step - 1] == link.key, (owner, link, keys[link.step - 1])
        checked += 1
    assert checked >= len(_links()) // 2

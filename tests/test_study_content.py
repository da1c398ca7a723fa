"""The study content: enough original questions, every exam topic covered, both languages,
four choices with one answer and an explanation each, no answer given away by its length or
drawn as a wrong choice, IPA punctuation, and links that land on the event they describe."""

from __future__ import annotations

import random
import re
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.scenarios.model import load_all
from app.scenarios.runner import Recording
from app.study.content import LANGS, LETTERS, QUIZ_DIR, ContentError, Link, content, load_content
from app.study.portquiz import make_question
from app.web.app import create_app
from app.web.pages import step_of_event

C = content()
# The fourteen exam topics of the first bank; topics.toml may list more.
EXAM_TOPICS = {
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
    assert set(C.topics) >= EXAM_TOPICS
    counts = Counter(t for q in C.questions.values() for t in q.topics)
    thin = {t: counts[t] for t in C.topics if counts[t] < 3}
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
    assert any("スマホとPC" in u["ja"] and u["port"] == 993 for u in raw["usecases"])


def test_the_two_submission_cards_cannot_be_mistaken_for_each_other() -> None:
    # "Submission with authentication" fits 465 as well: 587's label says STARTTLS.
    for lang in LANGS:
        assert "STARTTLS" in C.cards["587"].label[lang]
        assert "STARTTLS" not in C.cards["465"].label[lang]
        assert "submissions" in C.cards["465"].label[lang]  # RFC 8314's name
        assert "SMTPS" in C.cards["465"].label[lang]  # the name exams use
        assert "RFC 8314" in C.cards["465"].explain[lang]


def test_our_mnemonics_are_not_the_source_articles() -> None:
    # Facts carry over from the seed article; its sentences and 語呂合わせ do not.
    for phrase in ("にこにこ", "こわいな", "J-POP", "九九", "いい読み", "居間"):
        for card in C.cards.values():
            assert phrase not in card.mnemonic["ja"], (card.port, phrase)


# -- the port quiz never grades a right answer wrong ---------------------------------------


def test_no_use_case_offers_another_right_answer_as_a_distractor() -> None:
    rng = random.Random(25)
    for case in C.usecases:
        right = C.right_ports(case)
        assert case.port in right, case.id
        card = C.cards[str(case.port)]
        asked = 0
        for _ in range(400):
            q = make_question(C, card, "srs", reps=5, rng=rng)
            if q.usecase != case.id:
                continue
            asked += 1
            wrong = set(q.options) - {case.port}
            assert len(wrong) == 3 and not wrong & right, (case.id, q.options, right)
        assert asked >= 10, (case.id, asked)


def test_sending_despite_op25b_never_offers_465_as_wrong() -> None:
    case = next(u for u in C.usecases if u.id == "submit-op25b")
    assert C.right_ports(case) == {587, 465}
    # Nor is any other situation answered by more cards than its key, unnoticed.
    for u in C.usecases:
        if u.id != "submit-op25b":
            assert C.right_ports(u) == {u.port}, u.id


# -- the answer is not the longest choice -------------------------------------------------

LONG_CHOICES = 12  # characters per choice, on average, from which length can give it away


def key_longest_share(lang: str) -> tuple[int, int]:
    """(questions whose key is strictly longer than each other choice, questions counted)."""
    longest = counted = 0
    for q in C.questions.values():
        choices = q.choices[lang]
        if sum(len(c) for c in choices) / 4 < LONG_CHOICES:
            continue
        counted += 1
        key = len(choices[q.answer])
        if all(key > len(c) for i, c in enumerate(choices) if i != q.answer):
            longest += 1
    return longest, counted


@pytest.mark.parametrize("lang", LANGS)
def test_the_longest_choice_is_the_answer_at_most_a_third_of_the_time(lang: str) -> None:
    longest, counted = key_longest_share(lang)
    assert counted >= 30, counted
    assert longest * 3 <= counted, f"{lang}: the key is the longest choice in {longest}/{counted}"


# -- IPA punctuation in the exam text ------------------------------------------------------

JA = r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]"
LATIN = r"[A-Za-z0-9]"
SPACED = re.compile(rf"{JA} +{LATIN}|{LATIN} +{JA}")


def test_stems_and_choices_follow_the_ipa_papers_punctuation() -> None:
    for q in C.questions.values():
        for text in (q.stem["ja"], *q.choices["ja"]):
            assert "、" not in text, (q.id, text)
            assert not SPACED.search(text), (q.id, SPACED.search(text), text)


def test_port_quiz_situations_follow_the_same_style() -> None:
    for case in C.usecases:
        assert "、" not in case.text["ja"], case.id
        assert not SPACED.search(case.text["ja"]), (case.id, SPACED.search(case.text["ja"]))


def test_the_punctuation_check_catches_the_old_style() -> None:
    assert SPACED.search("SMTP-AUTH の説明として") and SPACED.search("587 番")
    assert not SPACED.search("SMTP-AUTHの説明として，適切なものはどれか。")
    assert not SPACED.search("AUTH PLAINで送る")


# -- links name an event, and the flow page opens on it -------------------------------------


def _links() -> list[tuple[str, Link]]:
    return [(q.id, q.link) for q in C.questions.values() if q.link is not None] + [
        (f"port {c.port}", c.link) for c in C.cards.values()
    ]


def test_links_name_scenarios_and_events() -> None:
    slugs = set(load_all())
    for owner, link in _links():
        assert link.scenario in slugs, owner
        assert link.href == (
            f"/flow/{link.scenario}?event={link.key}&occurrence={link.occurrence}"
        ), owner


def test_each_question_links_a_scenario_about_its_topic() -> None:
    # A dedicated scenario, not basic-pop3 by default: they share an exam topic.
    scenarios = load_all()
    for q in C.questions.values():
        if q.link is None:  # law and office practice: no scenario shows them
            continue
        shown = set(scenarios[q.link.scenario].topics)
        assert shown & set(q.topics), (q.id, q.link.scenario, q.topics)


def test_a_link_with_a_step_number_is_refused(tmp_path: Path) -> None:
    quiz = tmp_path / "quiz"
    quiz.mkdir()
    for name in ("topics.toml", "ports.toml"):
        (quiz / name).write_text((QUIZ_DIR / name).read_text("utf-8"), "utf-8")
    ports = (quiz / "ports.toml").read_text("utf-8")
    (quiz / "ports.toml").write_text(
        ports.replace('key = "pop3.greeting" }', 'key = "pop3.greeting", step = 60 }', 1), "utf-8"
    )
    with pytest.raises(ContentError, match="unknown fields"):
        load_content(quiz, tmp_path)


def test_every_link_lands_on_its_event(scenario_recording: Callable[[str], Recording]) -> None:
    for owner, link in _links():
        events = scenario_recording(link.scenario).events
        step = step_of_event(events, link.key, link.occurrence)
        found = sum(1 for e in events if e.key == link.key)
        assert step is not None, f"{owner}: {link.key} occurs {found}× in {link.scenario}"
        assert events[step - 1].key == link.key


def test_port_links_show_that_port_and_its_kind_of_tls(
    scenario_recording: Callable[[str], Recording],
) -> None:
    for card in C.cards.values():
        events = scenario_recording(card.link.scenario).events
        step = step_of_event(events, card.link.key, card.link.occurrence)
        assert step is not None, card.port
        event = events[step - 1]
        assert event.port == card.port, (card.port, event)
        same = [e for e in events[:step] if e.session == event.session]
        switched = any(e.key.endswith((".starttls", ".stls")) for e in same)
        if card.implicit_tls:
            # TLS before the protocol's first word: no STARTTLS/STLS on the way there.
            assert event.tls and not switched, (card.port, event)


def test_the_flow_page_opens_on_the_linked_event(tmp_path: Path) -> None:
    first: dict[str, Link] = {}
    for _, link in _links():
        first.setdefault(link.scenario, link)
    with TestClient(create_app(Settings(data_dir=tmp_path, lab=False))) as client:
        flow = client.app.state.flow  # type: ignore[attr-defined]
        for link in first.values():
            page = client.get(link.href)
            assert page.status_code == 200, link
            step = int(re.search(r'data-step="(\d+)"', page.text).group(1))
            session = re.search(r'data-session="([^"]+)"', page.text).group(1)
            events = flow.sessions.get(session).recording.events  # the recording shown
            assert step >= 1 and events[step - 1].key == link.key, (link, step)
            before = sum(1 for e in events[: step - 1] if e.key == link.key)
            assert before == link.occurrence - 1, (link, step)
        # ?step=N still wins (the page keeps it current while the learner moves).
        page = client.get("/flow/open-relay?event=smtp.rcpt.554&occurrence=1&step=2")
        assert 'data-step="2"' in page.text
        # An event this recording lacks opens the scenario at its start.
        assert 'data-step="0"' in client.get("/flow/open-relay?event=no.such.key").text
        assert client.get("/flow/open-relay?event=smtp.rcpt&occurrence=x").status_code == 400

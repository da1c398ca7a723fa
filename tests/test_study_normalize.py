"""Typed-answer normalisation and grading of port-quiz questions."""

from __future__ import annotations

import random

import pytest

from app.study.content import content
from app.study.normalize import fold, matches_service, parse_port
from app.study.portquiz import PortQuestion, Unreadable, grade, make_question

C = content()


@pytest.mark.parametrize(
    "typed",
    [
        "pop3s",
        "POP3S",
        "ＰＯＰ３Ｓ",
        "POP3 over TLS",
        "pop3 over ssl",
        "POP3/SSL",
        "POP3（SSL/TLS）",
        "secure POP3",
        "pops",
        " POP3S 995 ",
        "POP3-TLS",
    ],
)
def test_spellings_of_pop3s_are_accepted(typed: str) -> None:
    assert matches_service(typed, C.cards["995"])


@pytest.mark.parametrize("typed", ["pop3", "imaps", "POP3 110", "smtp", "", "pop3s 993"])
def test_wrong_services_for_995_are_refused(typed: str) -> None:
    assert not matches_service(typed, C.cards["995"])


@pytest.mark.parametrize(
    ("card", "typed"),
    [
        ("25", "SMTP"),
        ("25", "smtp relay"),
        ("587", "Submission"),
        ("587", "SMTP submission"),
        ("587", "サブミッション"),
        ("465", "SMTPS"),
        ("465", "submissions"),
        ("465", "SMTP over TLS"),
        ("110", "POP3"),
        ("110", "ｐｏｐ３"),
        ("143", "IMAP4"),
        ("143", "imap"),
        ("993", "IMAPS"),
        ("993", "IMAP over SSL"),
        ("993", "ＩＭＡＰＳ"),
    ],
)
def test_each_card_accepts_its_names(card: str, typed: str) -> None:
    assert matches_service(typed, C.cards[card])


def test_plain_protocol_is_not_its_secure_variant() -> None:
    assert not matches_service("SMTP", C.cards["465"])
    assert not matches_service("IMAP", C.cards["993"])
    assert not matches_service("IMAPS", C.cards["143"])


def test_smtp_is_right_for_587_but_not_for_465() -> None:
    # Submission on 587 is SMTP (RFC 6409); 465 is SMTP inside TLS, so plain "SMTP" is not it.
    assert matches_service("SMTP", C.cards["587"])
    assert matches_service("ｓｍｔｐ 587", C.cards["587"])
    assert not matches_service("SMTP", C.cards["465"])
    assert not matches_service("SMTPS", C.cards["587"])


@pytest.mark.parametrize(
    ("typed", "port"),
    [
        ("995", 995),
        ("９９５", 995),
        ("995番", 995),
        ("９９５番ポート", 995),
        ("port 995", 995),
        ("ポート 587", 587),
        (" 25 ", 25),
        ("143/tcp", 143),
    ],
)
def test_port_numbers_in_any_width(typed: str, port: int) -> None:
    assert parse_port(typed) == port


@pytest.mark.parametrize("typed", ["", "POP3", "99 5x", "1234567", "port"])
def test_non_numbers_are_not_ports(typed: str) -> None:
    assert parse_port(typed) is None


def test_fold_removes_width_case_and_punctuation() -> None:
    assert fold("ＰＯＰ３ over TLS!") == "pop3overtls"


def _question(card: str, kind: str, options: tuple[int, ...] = ()) -> PortQuestion:
    return PortQuestion(card, kind, options, None, "srs", 0, "n")


def test_grading_typed_and_choice_questions() -> None:
    assert grade(C, _question("995", "port2svc"), "pop3 over tls").correct
    assert not grade(C, _question("995", "port2svc"), "imaps").correct
    assert grade(C, _question("993", "svc2port"), "９９３").correct
    assert not grade(C, _question("993", "svc2port"), "995").correct
    q = _question("587", "mc_svc2port", (25, 587, 465, 443))
    assert grade(C, q, "587").correct
    assert not grade(C, q, "25").correct


@pytest.mark.parametrize(
    ("kind", "answer"),
    [("port2svc", "   "), ("svc2port", "POP3S"), ("mc_svc2port", "110"), ("mc_svc2port", "x")],
)
def test_unreadable_answers_raise(kind: str, answer: str) -> None:
    with pytest.raises(Unreadable):
        grade(C, _question("587", kind, (25, 587, 465, 443)), answer)


def test_generated_choices_hold_the_answer_and_distractors_are_never_asked() -> None:
    rng = random.Random(7)
    distractors = {d.port for d in C.distractors}
    for _ in range(300):
        card = rng.choice(list(C.cards.values()))
        q = make_question(C, card, "srs", reps=3, rng=rng)
        assert q.card in C.cards and int(q.card) not in distractors
        if q.options:
            assert len(q.options) == 4 == len(set(q.options))
            assert card.port in q.options
        if q.kind == "usecase":
            assert q.usecase and not distractors & set(q.options)


def test_token_round_trip_and_rejection() -> None:
    q = make_question(C, C.cards["110"], "practice", rng=random.Random(1))
    assert PortQuestion.from_token(q.to_token(), C) == q
    assert PortQuestion.from_token({**q.to_token(), "c": "53"}, C) is None
    assert PortQuestion.from_token({"c": "110"}, C) is None
    assert PortQuestion.from_token("nonsense", C) is None

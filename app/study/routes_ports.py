"""The port quiz: spaced session, practice, the 60-second speed round, and the stats page."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature

from app.digits import is_digits
from app.study import charts
from app.study.learner import Who
from app.study.portquiz import (
    CHOICE,
    TYPED,
    PortQuestion,
    Unreadable,
    grade,
    label_for_port,
    make_question,
    now_ms,
    service_for_port,
)
from app.study.setup import Study
from app.study.store import DAY_ZONE, CardDue, utcnow
from app.study.web import (
    is_htmx,
    lang,
    missed_questions,
    on_db_thread,
    problem,
    render,
    study,
    until_text,
)
from app.web.i18n import gettext as _

router = APIRouter()


def _pick(
    dues: list[CardDue], now: datetime, practice: bool, avoid: str | None
) -> tuple[str, int] | None:
    """The card to ask next: overdue cards first (oldest due), then new ones in random order."""
    if practice:
        pool = [c for c in dues if c.card != avoid] or dues
        pick = random.choice(pool)
        return pick.card, pick.reps
    due_now = [c for c in dues if c.due <= now]
    if not due_now:
        return None
    seen = sorted((c for c in due_now if c.seen), key=lambda c: c.due)
    fresh = [c for c in due_now if not c.seen]
    random.shuffle(fresh)
    order = seen + fresh
    pick = next((c for c in order if c.card != avoid), order[0])
    return pick.card, pick.reps


def question_view(st: Study, q: PortQuestion) -> dict[str, Any]:
    lg = lang()
    card = st.content.cards[q.card]
    options = []
    for i, port in enumerate(q.options, start=1):
        if q.kind == "mc_port2svc":
            text = label_for_port(st.content, port, lg)
        elif q.kind == "usecase":
            text = f"{service_for_port(st.content, port)} / {port}"
        else:
            text = str(port)
        options.append({"key": i, "value": port, "text": text})
    usecase = next((u.text[lg] for u in st.content.usecases if u.id == q.usecase), "")
    return {
        "token": st.questions.dumps(q.to_token()),
        "kind": q.kind,
        "typed": q.kind in TYPED,
        "port": card.port,
        "service": card.label[lg],
        "usecase": usecase,
        "options": options,
    }


def feedback_view(st: Study, q: PortQuestion, correct: bool, given: str) -> dict[str, Any]:
    lg = lang()
    card = st.content.cards[q.card]
    shown = given
    if q.kind in CHOICE and is_digits(given) and len(given) <= 5:
        port = int(given)
        shown = (
            label_for_port(st.content, port, lg)
            if q.kind == "mc_port2svc"
            else f"{service_for_port(st.content, port)} / {port}"
            if q.kind == "usecase"
            else given
        )
    return {
        "correct": correct,
        "given": shown,
        "port": card.port,
        "service": card.label[lg],
        "explain": card.explain[lg],
        "mnemonic": card.mnemonic[lg],
        "link": card.link,
        "card": card.id,
    }


def _elapsed(q: PortQuestion) -> int | None:
    ms = now_ms() - q.issued_ms
    return ms if 0 <= ms <= 3_600_000 else None


def _read_question(st: Study, token: str) -> PortQuestion | None:
    try:
        data = st.questions.loads(token)
    except BadSignature:
        return None
    return PortQuestion.from_token(data, st.content)


def _unreadable_message(code: str, q: PortQuestion) -> str:
    if code == "number":
        return _("Type a port number, for example 110.")
    if code == "empty":
        return _("Type an answer first.") if q.kind in TYPED else _("Pick one of the choices.")
    return _("That answer could not be read. Please try again.")


def _session_ctx(dues: list[CardDue], now: datetime, practice: bool) -> dict[str, Any]:
    due_now = sum(1 for c in dues if c.due <= now)
    upcoming = min((c.due for c in dues if c.due > now), default=None)
    return {
        "due_now": due_now,
        "practice": practice,
        "total_cards": len(dues),
        "next_due_text": until_text((upcoming - now).total_seconds()) if upcoming else "",
    }


def _ports_page(
    request: Request, st: Study, ctx: dict[str, Any], *, status: int = 200, who: Who | None = None
) -> Response:
    template = "study/_port_card.html" if is_htmx(request) else "study/ports.html"
    return render(request, template, ctx, status=status, who=who)


@router.get("/quiz")
@on_db_thread
def quiz_home(request: Request) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    now = utcnow()
    return render(
        request,
        "study/quiz_home.html",
        {
            "progress": st.store.progress(who.id, now),
            "best": st.store.speed_best(who.id),
            "misses": len(missed_questions(st, who.id)),
            "question_count": len(st.content.questions),
        },
    )


@router.get("/quiz/ports")
@on_db_thread
def ports(request: Request, practice: str = "", last: str = "") -> Response:
    st = study(request)
    who = st.cookies.read(request)
    is_practice = practice == "1"
    now = utcnow()
    dues = st.store.card_dues(who.id, now)
    ctx = _session_ctx(dues, now, is_practice)
    picked = _pick(dues, now, is_practice, last or None)
    if picked is None:
        return _ports_page(request, st, {**ctx, "stage": "done"})
    card_id, reps = picked
    q = make_question(
        st.content, st.content.cards[card_id], "practice" if is_practice else "srs", reps
    )
    return _ports_page(request, st, {**ctx, "stage": "ask", "q": question_view(st, q)})


@router.post("/quiz/ports/answer")
@on_db_thread
def ports_answer(request: Request, token: str = Form(""), answer: str = Form("")) -> Response:
    st = study(request)
    q = _read_question(st, token)
    if q is None or q.mode == "speed":
        msg = _("This question could not be read. Here is a new one.")
        return problem(request, msg, back="/quiz/ports")
    practice = q.mode == "practice"
    try:
        outcome = grade(st.content, q, answer)
    except Unreadable as exc:
        who = st.cookies.read(request)
        now = utcnow()
        ctx = {
            **_session_ctx(st.store.card_dues(who.id, now), now, practice),
            "stage": "ask",
            "q": {**question_view(st, q), "token": token},
            "error": _unreadable_message(str(exc), q),
            "typed_value": answer[:100],
        }
        return _ports_page(request, st, ctx, status=422)
    who = st.cookies.for_write(request)
    now = utcnow()
    dues = st.store.record_port_answer(
        who.id or "",
        mode=q.mode,
        card=q.card,
        kind=q.kind,
        given=outcome.given,
        correct=outcome.correct,
        ms=_elapsed(q),
        nonce=q.nonce,
        now=now,
    )
    if dues is None:  # the same form again: already stored, show the same feedback
        dues = st.store.card_dues(who.id, now)
    ctx = {
        **_session_ctx(dues, now, practice),
        "stage": "feedback",
        "fb": feedback_view(st, q, outcome.correct, outcome.given),
    }
    return _ports_page(request, st, ctx, who=who)


# ---- speed round ----


@router.get("/quiz/speed")
@on_db_thread
def speed_home(request: Request) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    return render(request, "study/speed_home.html", {"best": st.store.speed_best(who.id)})


@router.post("/quiz/speed/start")
@on_db_thread
def speed_start(request: Request) -> Response:
    st = study(request)
    who = st.cookies.for_write(request)
    run_id = st.store.start_speed(who.id or "", utcnow())
    response = RedirectResponse(f"/quiz/speed/{run_id}", status_code=303)
    st.cookies.attach(response, who, request)
    return response


def _speed_ctx(
    st: Study, request: Request, run_id: str, who_id: str | None, last: dict[str, Any] | None
) -> dict[str, Any]:
    run = st.store.speed_run(who_id, run_id)
    if run is None:
        raise HTTPException(404, detail="speed run")
    left = st.store.speed_left(run, utcnow())
    ctx: dict[str, Any] = {
        "run_id": run_id,
        "score": run.score,
        "answered": run.answered,
        "last": last,
    }
    if left <= 0:
        best = st.store.speed_best(who_id)
        return {**ctx, "stage": "over", "best": best, "new_best": run.score >= best > 0}
    card = random.choice(list(st.content.cards.values()))
    q = make_question(st.content, card, "speed")
    return {
        **ctx,
        "stage": "ask",
        "left": int(left),
        "deadline_ms": now_ms() + int(left * 1000),
        "q": question_view(st, q),
    }


def _speed_page(request: Request, ctx: dict[str, Any], status: int = 200) -> Response:
    template = "study/_speed_card.html" if is_htmx(request) else "study/speed.html"
    return render(request, template, ctx, status=status)


@router.get("/quiz/speed/{run_id}")
@on_db_thread
def speed_run(request: Request, run_id: str) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    return _speed_page(request, _speed_ctx(st, request, run_id, who.id, None))


@router.post("/quiz/speed/{run_id}/answer")
@on_db_thread
def speed_answer(
    request: Request, run_id: str, token: str = Form(""), answer: str = Form("")
) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    q = _read_question(st, token)
    if q is None or q.mode != "speed" or who.id is None:
        return problem(
            request, _("This question could not be read. Start a new round."), back="/quiz/speed"
        )
    try:
        outcome = grade(st.content, q, answer)
    except Unreadable:
        return _speed_page(request, _speed_ctx(st, request, run_id, who.id, None))
    counted = st.store.record_speed_answer(
        who.id,
        run_id,
        card=q.card,
        kind=q.kind,
        given=outcome.given,
        correct=outcome.correct,
        ms=_elapsed(q),
        nonce=q.nonce,
        now=utcnow(),
    )
    last = {
        "correct": outcome.correct,
        "counted": counted,
        **feedback_view(st, q, outcome.correct, outcome.given),
    }
    return _speed_page(request, _speed_ctx(st, request, run_id, who.id, last))


# ---- stats ----


@router.get("/quiz/stats")
@on_db_thread
def stats(request: Request) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    now = utcnow()
    acc = st.store.port_accuracy(who.id)
    rows = [(f"{c.port}", *acc.get(c.id, (0, 0))) for c in st.content.cards.values()]
    days = st.store.reviews_per_day(who.id, now)
    lg = lang()
    topics_of = {q.id: q.topics for q in st.content.questions.values()}
    topic_acc = st.store.topic_accuracy(who.id, topics_of)
    topic_rows = [(t.name[lg], *topic_acc.get(t.id, (0, 0))) for t in st.content.topics.values()]
    cards = [(st.content.cards[c.card], c) for c in st.store.card_dues(who.id, now)]
    return render(
        request,
        "study/stats.html",
        {
            "acc_chart": charts.accuracy_bars(rows),
            "acc_rows": rows,
            "day_chart": charts.day_columns(days),
            "day_rows": days,
            "topic_rows": topic_rows,
            "cards": cards,
            "now": now,
            "tz": DAY_ZONE,
            "progress": st.store.progress(who.id, now),
        },
    )

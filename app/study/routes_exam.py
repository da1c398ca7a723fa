"""The question bank: by topic, a random 10-question mini exam, and review of the last misses."""

from __future__ import annotations

import random
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.digits import is_digits
from app.study.content import LETTERS, Question
from app.study.setup import Study
from app.study.store import ExamAnswer, ExamRun, utcnow
from app.study.web import (
    is_htmx,
    lang,
    missed_questions,
    on_db_thread,
    problem,
    recent_runs,
    render,
    study,
)
from app.web.i18n import gettext as _

router = APIRouter()
MINI_SIZE = 10
REVIEW_MAX = 20


@router.get("/quiz/exam")
@on_db_thread
def exam_home(request: Request) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    lg = lang()
    topics = [(t, len(st.content.questions_in(t.id))) for t in st.content.topics.values()]
    levels = {
        lv: sum(1 for q in st.content.questions.values() if q.level == lv)
        for lv in ("FE", "SG", "AP")
    }
    runs = recent_runs(st, who.id, lg)
    return render(
        request,
        "study/exam_home.html",
        {
            "topics": topics,
            "levels": levels,
            "total": len(st.content.questions),
            "misses": len(missed_questions(st, who.id)),
            "runs": runs,
            "mini_size": MINI_SIZE,
        },
    )


@router.post("/quiz/exam/start")
@on_db_thread
def exam_start(request: Request, mode: str = Form(""), topic: str = Form("")) -> Response:
    st = study(request)
    who = st.cookies.for_write(request)
    if mode == "topic":
        if topic not in st.content.topics:
            return problem(request, _("There is no such topic."), back="/quiz/exam", status=422)
        ids = [q.id for q in st.content.questions_in(topic)]
        random.shuffle(ids)
    elif mode == "mini":
        ids = random.sample(list(st.content.questions), MINI_SIZE)
    elif mode == "review":
        ids = missed_questions(st, who.id if not who.issue else None)[:REVIEW_MAX]
        if not ids:
            return problem(
                request,
                _("There are no missed questions to review. Well done!"),
                back="/quiz/exam",
                status=422,
            )
    else:
        return problem(
            request,
            _("Choose a topic, the mini exam or the review."),
            back="/quiz/exam",
            status=422,
        )
    run_id = st.store.start_exam(
        who.id or "", mode, topic if mode == "topic" else None, ids, utcnow()
    )
    response = RedirectResponse(f"/quiz/exam/run/{run_id}", status_code=303)
    st.cookies.attach(response, who, request)
    return response


def _load(
    st: Study, request: Request, run_id: str
) -> tuple[ExamRun, list[Question], dict[int, ExamAnswer], list[int]]:
    """The run, its questions still in the bank, their answers by index into that list, and
    each one's position in the run as stored (a question removed from the bank is skipped,
    so the two numberings differ once one is gone)."""
    who = st.cookies.read(request)
    found = st.store.exam_run(who.id, run_id)
    if found is None:
        raise HTTPException(404, detail="exam run")
    run, stored = found
    kept = [
        (pos, st.content.questions[qid])
        for pos, qid in enumerate(run.questions.split())
        if qid in st.content.questions
    ]
    positions = [pos for pos, _ in kept]
    answers = {i: stored[pos] for i, pos in enumerate(positions) if pos in stored}
    return run, [q for _, q in kept], answers, positions


def _question_ctx(
    st: Study, run: ExamRun, questions: list[Question], position: int, answer: ExamAnswer | None
) -> dict[str, Any]:
    lg = lang()
    q = questions[position]
    choices = [
        {
            "index": i,
            "key": i + 1,
            "letter": LETTERS[i],
            "text": q.choices[lg][i],
            "why": q.explanations[lg][i],
            "answer": i == q.answer,
            "picked": answer is not None and answer.choice == i,
        }
        for i in range(4)
    ]
    return {
        "run": run,
        "position": position,
        "total": len(questions),
        "q": q,
        "stem": q.stem[lg],
        "choices": choices,
        "answer": answer,
        "topic_names": [st.content.topics[t].name[lg] for t in q.topics],
        "last": position == len(questions) - 1,
        "stage": "feedback" if answer is not None else "ask",
    }


def _result_ctx(
    st: Study, run: ExamRun, questions: list[Question], answers: dict[int, ExamAnswer]
) -> dict[str, Any]:
    lg = lang()
    rows = []
    for i, q in enumerate(questions):
        a = answers.get(i)
        rows.append(
            {
                "n": i + 1,
                "q": q,
                "stem": q.stem[lg],
                "correct": bool(a and a.correct),
                "picked": LETTERS[a.choice] if a else "–",
                "answer": LETTERS[q.answer],
            }
        )
    score = sum(1 for r in rows if r["correct"])
    return {
        "run": run,
        "rows": rows,
        "score": score,
        "total": len(rows),
        "percent": round(100 * score / len(rows)) if rows else 0,
        "missed": len(rows) - score,
        "topic": st.content.topics[run.topic].name[lg] if run.topic in st.content.topics else "",
    }


def _page(request: Request, ctx: dict[str, Any], status: int = 200) -> Response:
    template = "study/_exam_card.html" if is_htmx(request) else "study/exam_run.html"
    return render(request, template, ctx, status=status)


@router.get("/quiz/exam/run/{run_id}")
@on_db_thread
def exam_run(request: Request, run_id: str) -> Response:
    st = study(request)
    run, questions, answers, _ = _load(st, request, run_id)
    position = next((i for i in range(len(questions)) if i not in answers), None)
    if position is None:
        return render(request, "study/exam_result.html", _result_ctx(st, run, questions, answers))
    return _page(request, _question_ctx(st, run, questions, position, None))


@router.post("/quiz/exam/run/{run_id}/answer")
@on_db_thread
def exam_answer(
    request: Request,
    run_id: str,
    position: str = Form(""),
    question: str = Form(""),
    choice: str = Form(""),
) -> Response:
    st = study(request)
    run, questions, answers, positions = _load(st, request, run_id)
    if not is_digits(position) or len(position) > 4 or int(position) >= len(questions):
        return problem(
            request,
            _("That answer did not match a question of this exam."),
            back=f"/quiz/exam/run/{run_id}",
            status=422,
        )
    pos = int(position)
    q = questions[pos]
    if question != q.id:
        return problem(
            request,
            _("That answer did not match a question of this exam."),
            back=f"/quiz/exam/run/{run_id}",
            status=422,
        )
    if pos in answers:
        # A re-sent form: the first answer stands; show its feedback again.
        return _page(request, _question_ctx(st, run, questions, pos, answers[pos]))
    if choice not in ("0", "1", "2", "3"):
        ctx = {
            **_question_ctx(st, run, questions, pos, None),
            "error": _("Pick one of the choices ア to エ."),
        }
        return _page(request, ctx, status=422)
    picked = int(choice)
    st.store.record_exam_answer(
        st.cookies.read(request).id or "",
        run_id,
        positions[pos],
        q.id,
        picked,
        picked == q.answer,
        utcnow(),
    )
    answer = _load(st, request, run_id)[2].get(pos)
    return _page(request, _question_ctx(st, run, questions, pos, answer))

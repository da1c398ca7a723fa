"""Bench-only twin of the port-quiz answer: same parsing, grading and page, no database.

Mounted only when MAILFLOW_BENCH=1 (see routes.py), so bench/bench_quiz.py can measure what
the database adds to an answer in the same run. Never part of a normal start.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.study.portquiz import grade
from app.study.routes_ports import _ports_page, _read_question, feedback_view
from app.study.web import problem, study

router = APIRouter()


@router.post("/bench/quiz/ports/answer-nodb")
async def answer_without_db(
    request: Request, token: str = Form(""), answer: str = Form("")
) -> Response:
    # Same parsing, grading and page as the real endpoint, minus the store and so minus the
    # hop to the database threads: the difference is what the database path costs.
    st = study(request)
    q = _read_question(st, token)
    if q is None:
        return problem(request, "bad token", back="/quiz/ports")
    outcome = grade(st.content, q, answer)
    ctx = {
        "due_now": 0,
        "next_due_text": "",
        "practice": False,
        "total_cards": 7,
        "stage": "feedback",
        "fb": feedback_view(st, q, outcome.correct, outcome.given),
    }
    return _ports_page(request, st, ctx)

"""The app as bench/bench_quiz.py serves it: the real app plus a bench-only twin of the
port-quiz answer (same parsing, grading and page, no database), so the benchmark measures what
the database adds to an answer in the same run. The product never mounts this route:

    python -m uvicorn --app-dir bench quiz_app:create_bench_app --factory
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import Response

from app.study.portquiz import grade
from app.study.routes_ports import _ports_page, _read_question, feedback_view
from app.study.web import problem, study
from app.web.app import create_app

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


def create_bench_app() -> FastAPI:
    app = create_app()
    app.include_router(router)
    return app

"""Helpers shared by the study routes: the Study object, rendering, the learner cookie."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.study.learner import Who
from app.study.setup import Study
from app.web import i18n
from app.web.i18n import gettext as _


def study(request: Request) -> Study:
    return request.app.state.study


def on_db_thread(body: Callable[..., Response]) -> Callable[..., Awaitable[Response]]:
    """Make a study route async, its body run on the database threads (`Database.call`).

    The one path from a request to the learner store: the loop only awaits, so a request
    waiting on the database (SQLite's lock, a PostgreSQL row lock) stalls no other request.
    FastAPI reads the parameters from `body`'s signature (functools.wraps) and passes them
    all by name.
    """

    @functools.wraps(body)
    async def route(**params: Any) -> Response:
        request: Request = params["request"]
        return await study(request).db.call(functools.partial(body, **params))

    return route


def lang() -> str:
    return i18n.current_lang.get()


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    ctx: dict[str, Any],
    *,
    status: int = 200,
    who: Who | None = None,
) -> Response:
    response = request.app.state.templates.TemplateResponse(
        request, template, {**ctx, "lang": lang()}, status_code=status
    )
    response.headers["Cache-Control"] = "no-store"  # progress pages change with every answer
    if who is not None:
        study(request).cookies.attach(response, who, request)
    return response


def problem(
    request: Request,
    message: str,
    *,
    status: int = 400,
    back: str = "/quiz",
    who: Who | None = None,
) -> Response:
    """A clear page for input we cannot use; nothing has been changed."""
    template = "study/_problem.html" if is_htmx(request) else "study/problem.html"
    return render(
        request,
        template,
        {"message": message, "back": back, "status": status},
        status=status,
        who=who,
    )


def missed_questions(st: Study, learner_id: str | None) -> list[str]:
    """The learner's last misses that are still in the bank (a removed question is dropped)."""
    return [q for q in st.store.last_misses(learner_id) if q in st.content.questions]


def until_text(seconds: float) -> str:
    """A short, translated "in how long" for the next review."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return _("%(n)s min") % {"n": minutes}
    hours = round(minutes / 60)
    if hours < 48:
        return _("%(n)s h") % {"n": hours}
    return _("%(n)s days") % {"n": round(hours / 24)}


def recent_runs(st: Study, learner_id: str | None, lg: str) -> list[dict[str, Any]]:
    """The learner's latest exam runs with their scores, for the exam and progress pages."""
    runs = []
    for run in st.store.recent_exam_runs(learner_id):
        found = st.store.exam_run(learner_id, run.id)
        # Only the questions still in the bank count, as on the run's own pages.
        kept = [pos for pos, qid in enumerate(run.questions.split()) if qid in st.content.questions]
        stored = found[1] if found else {}
        answers = {pos: stored[pos] for pos in kept if pos in stored}
        topic = st.content.topics.get(run.topic)
        runs.append(
            {
                "run": run,
                "done": len(answers),
                "total": len(kept),
                "correct": sum(1 for a in answers.values() if a.correct),
                "topic": topic.name[lg] if topic else "",
            }
        )
    return runs

"""Predict-the-next-line pages: `/flow/{slug}?mode=predict` and its answer form.

Server-rendered and htmx-enhanced: the answer form is a plain POST that redirects
back (works without JavaScript); with htmx the same route returns only the new
lines and the next question. Progress lives in the FlowSession, next to the recording.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.web import i18n
from app.web.flow_view import hops
from app.web.predict_game import BadGuess, PredictState, answer, candidates, new_state, read_guess
from app.web.service import FlowService
from app.web.sessions import FlowSession

router = APIRouter()
MODES = ("predict",)  # besides the default step-through page


def _flow(request: Request) -> FlowService:
    return request.app.state.flow


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _state(session: FlowSession) -> PredictState:
    if not isinstance(session.predict, PredictState):
        session.predict = new_state(session.recording.events)
    return session.predict


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    return request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status_code
    )


def _context(
    request: Request, session: FlowSession, *, error: str | None = None, start: int = 0
) -> dict[str, Any]:
    flow = _flow(request)
    state = _state(session)
    events = session.recording.events
    shown = state.revealed(len(events))
    return {
        "scenario": flow.scenarios[session.slug],
        "session": session,
        "state": state,
        "events": events,
        "shown": shown,
        "new_from": start,  # first revealed event index the fragment appends
        "offered": candidates(state, events, session.id),
        "last": state.turns[-1] if state.turns else None,
        "hops": hops(events) if state.done else [],
        "catalog": flow.catalog,
        "lang": i18n.current_lang.get(),
        "error": error,
    }


def unknown_mode(request: Request, mode: str) -> Response:
    """`?mode=` that is neither absent nor a mode we have: say so, and offer the real ones."""
    return _render(
        request,
        "predict_error.html",
        {"status": 400, "reason": "mode", "mode": mode[:40], "slug": request.path_params["slug"]},
        400,
    )


async def predict_page(request: Request, slug: str) -> Response:
    """A fresh recorded run to predict, or the learner's own run again (?session=)."""
    flow = _flow(request)
    session = flow.sessions.get(request.query_params.get("session"))
    if session is None or session.slug != slug:
        session = await flow.new_session(slug, i18n.current_lang.get())
    state = _state(session)
    session.move_to(state.revealed(session.total))
    return _render(request, "predict.html", _context(request, session))


@router.post("/flow/{slug}/predict")
async def predict_answer(request: Request, slug: str) -> Response:
    flow = _flow(request)
    if slug not in flow.scenarios:
        raise HTTPException(404, detail="scenario")
    form = await request.form()
    fields = {k: v if isinstance(v, str) else "" for k, v in form.items()}
    session = flow.sessions.get(fields.get("session"))
    if session is None or session.slug != slug:
        # Sessions live in memory: after a restart or a long pause, start a new run.
        context = {"status": 410, "reason": "expired", "slug": slug}
        if _is_htmx(request):  # htmx swaps only 2xx answers into the page
            return _render(request, "_predict_error.html", context)
        return _render(request, "predict_error.html", context, 410)
    state = _state(session)
    before = state.revealed(session.total)
    error = None
    # The hidden point guards against a double submit answering the next question too.
    if not state.done and fields.get("point") == str(state.point):
        try:
            line, typed = read_guess(
                fields.get("choice"),
                fields.get("typed"),
                candidates(state, session.recording.events, session.id),
            )
        except BadGuess as exc:
            error = exc.code
        else:
            answer(state, session.recording.events, line, typed)
    session.move_to(state.revealed(session.total))
    if _is_htmx(request):
        context = _context(request, session, error=error, start=before)
        return _render(request, "_predict_step.html", context)
    if error:
        return _render(request, "predict.html", _context(request, session, error=error), 400)
    lang = i18n.current_lang.get()
    url = f"/flow/{slug}?mode=predict&session={session.id}&lang={lang}#predict-turn"
    return RedirectResponse(url, status_code=303)

"""Server-rendered pages: the start page and the four-panel flow page."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from app.digits import is_digits
from app.web import i18n
from app.web.flow_view import hops, panels
from app.web.predict import MODES, predict_page, unknown_mode
from app.web.scenario_list import scenario_list
from app.web.service import FlowService

router = APIRouter()


def _flow(request: Request) -> FlowService:
    return request.app.state.flow


def parse_step(raw: str | None) -> int:
    """?step=N: a whole number ≥ 0; anything else is the learner's typo, told plainly."""
    if raw is None or raw == "":
        return 0
    if not is_digits(raw) or len(raw) > 6:
        raise HTTPException(400, detail="step")
    return int(raw)


@router.get("/")
async def index(request: Request) -> Response:
    flow = _flow(request)
    return request.app.state.templates.TemplateResponse(
        request,
        "index.html",
        {"scenarios": list(flow.scenarios.values()), "lang": i18n.current_lang.get()},
    )


@router.get("/flow")
async def flow_list(request: Request) -> Response:
    return scenario_list(request)


@router.get("/flow/{slug}")
async def flow_page(request: Request, slug: str) -> Response:
    flow = _flow(request)
    scenario = flow.scenarios.get(slug)
    if scenario is None:
        raise HTTPException(404, detail="scenario")
    mode = request.query_params.get("mode")
    if mode == "predict":
        return await predict_page(request, slug)
    if mode and mode not in MODES:
        return unknown_mode(request, mode)
    step = parse_step(request.query_params.get("step"))
    lang = i18n.current_lang.get()
    session = await flow.new_session(slug, lang)
    step = session.move_to(step)
    events = session.recording.events
    return request.app.state.templates.TemplateResponse(
        request,
        "flow.html",
        {
            "scenario": scenario,
            "session": session,
            "events": events[:step],
            "step": step,
            "total": session.total,
            "panels": panels(events),
            "hops": hops(events),
            "catalog": flow.catalog,
            "lang": lang,
            "present": request.query_params.get("present") == "1",
            "active_panel": events[step - 1].panel if step else 0,
        },
    )

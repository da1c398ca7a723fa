"""The stage outside the flow page: a step as a slide (SVG), the ladder, the handout.

Each is drawn from a real recording of the scenario: the learner's own run when the
request names its session (so the slide matches the screen), else a fresh run.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from app.digits import is_digits
from app.scenarios.recording import Recording
from app.web import i18n
from app.web.flow_view import actor_label, actor_role, explain
from app.web.service import FlowService
from app.web.stage import ladder_actors
from app.web.stage_render import render_stage

router = APIRouter()
LADDER_CHUNK = 40  # rows per ladder drawing: one fits an A4 page


async def _recording(request: Request, slug: str) -> Recording:
    flow: FlowService = request.app.state.flow
    if slug not in flow.scenarios:
        raise HTTPException(404, detail="scenario")
    session = flow.sessions.get(request.query_params.get("session"))
    if session is not None and session.slug == slug:
        return session.recording
    return await flow.record(slug, i18n.current_lang.get())


@router.get("/flow/{slug}/step/{name}")
async def step_svg(request: Request, slug: str) -> Response:
    """The stage at step n as a standalone SVG document, to paste into slides."""
    name = request.path_params["name"]
    number = name.removesuffix(".svg")
    if not name.endswith(".svg") or not is_digits(number) or len(number) > 6:
        raise HTTPException(404, detail="step")
    recording = await _recording(request, slug)
    lang = i18n.current_lang.get()
    step = min(int(number), len(recording.events))
    svg = '<?xml version="1.0" encoding="UTF-8"?>\n' + str(
        render_stage(recording, step, lang, standalone=True)
    )
    return Response(
        svg,
        media_type="image/svg+xml",
        headers={"Content-Disposition": f'inline; filename="{slug}-{step}.svg"'},
    )


def ladder_context(recording: Recording, lang: str) -> dict[str, object]:
    events = recording.events
    actors = ladder_actors(events)
    chunks = [
        (start, events[start : start + LADDER_CHUNK])
        for start in range(0, len(events), LADDER_CHUNK)
    ]
    return {
        "actors": actors,
        "chunks": chunks,
        "roles": {a: actor_role(a) for a in actors},
        "labels": {a: actor_label(a, lang) for a in actors},
        "slug": recording.slug,
    }


@router.get("/flow/{slug}/ladder")
async def ladder(request: Request, slug: str) -> Response:
    """The ladder view's fragment (the flow page fetches it when L is first pressed)."""
    recording = await _recording(request, slug)
    lang = i18n.current_lang.get()
    html = request.app.state.templates.get_template("_ladder.html").render(
        **ladder_context(recording, lang)
    )
    return HTMLResponse(html)


@router.get("/flow/{slug}/handout")
async def handout(request: Request, slug: str) -> Response:
    """A printable page: the ladder, then every line with its explanation and RFC."""
    recording = await _recording(request, slug)
    lang = i18n.current_lang.get()
    flow: FlowService = request.app.state.flow
    return request.app.state.templates.TemplateResponse(
        request,
        "handout.html",
        {
            "scenario": flow.scenarios[slug],
            "recording": recording,
            "events": recording.events,
            "catalog": flow.catalog,
            "explain": explain,
            "lang": lang,
            **ladder_context(recording, lang),
        },
    )

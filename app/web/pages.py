"""Server-rendered pages: the start page and the flow page (stage, transcript, controls)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.digits import is_digits
from app.events import Event
from app.scenarios.recording import Recording
from app.web import i18n
from app.web.flow_view import hops
from app.web.predict import MODES, predict_page, unknown_mode
from app.web.scenario_list import scenario_list
from app.web.service import FlowService
from app.web.sessions import FlowSession
from app.web.stage_render import stage_of

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


def step_of_event(events: tuple[Event, ...], key: str, occurrence: int = 1) -> int | None:
    """The 1-based step of the `occurrence`-th event with `key`, or None if there is none.

    Links from the study pages name an event, not a step number, because a scenario that
    gains a line shifts every step after it; the event is found in the recording shown.
    """
    seen = 0
    for step, event in enumerate(events, start=1):
        if event.key == key:
            seen += 1
            if seen == occurrence:
                return step
    return None


def _start(query: dict[str, str]) -> tuple[int, str | None, int]:
    """(step, event key, occurrence) asked for. ?step=N wins: the page keeps it current
    while the learner moves. Typos are a 400 before any scenario runs."""
    step = parse_step(query.get("step"))
    occurrence = max(parse_step(query.get("occurrence")), 1)
    key = query.get("event") or None
    return step, (None if query.get("step") else key), occurrence


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
    step, key, occurrence = _start(dict(request.query_params))
    lang = i18n.current_lang.get()
    # ?session= is the learner's own run after "record afresh" (kept across a reload);
    # anything else gets the pool's shared recording, which is ready before it is asked.
    session = flow.sessions.get(request.query_params.get("session"))
    if session is None or session.slug != slug:
        session = await flow.new_session(slug, lang)
    events = session.recording.events
    if key is not None:
        # The event in the recording shown; the start if this run lacks it.
        step = step_of_event(events, key, occurrence) or 0
    step = session.move_to(step)
    recorded = recorded_stamp(session.recording)
    # A shared recording looks the same to every learner who opens the same address
    # (a class opening one link): render it once, then only the session id differs.
    cache_key = None
    if not session.private:
        cache_key = (session.recording, lang, request.url.path, request.url.query,
                     recorded["minutes"])  # fmt: skip
        html = _page_cache.get(cache_key)
        if html is not None:
            _page_cache.move_to_end(cache_key)
            return HTMLResponse(html.replace(_SESSION_MARK, session.id))
    page = request.app.state.templates.TemplateResponse(
        request,
        "flow.html",
        {
            "scenario": scenario,
            "session": _Marked(session) if cache_key else session,
            "events": events[:step],
            "step": step,
            "total": session.total,
            "recording": session.recording,
            "stage_live": stage_of(session.recording, lang).moves[step - 1].live if step else "",
            "hops": hops(events),
            "catalog": flow.catalog,
            "lang": lang,
            "present": request.query_params.get("present") == "1",
            "recorded": recorded,
        },
    )
    if cache_key is None:
        return page
    html = bytes(page.body).decode()
    _page_cache[cache_key] = html
    while len(_page_cache) > PAGE_CACHE_SIZE:
        _page_cache.popitem(last=False)
    return HTMLResponse(html.replace(_SESSION_MARK, session.id))


# Rendered flow pages of shared recordings, the session id left as a mark. Bounded:
# a page is ~30 KB, and an entry keeps its recording alive until it is pushed out.
PAGE_CACHE_SIZE = 64
_page_cache: OrderedDict[tuple[object, ...], str] = OrderedDict()
_SESSION_MARK = "session-" + secrets.token_hex(8)


class _Marked:
    """The session as the template sees it, with the mark for an id."""

    def __init__(self, session: FlowSession) -> None:
        self._session = session
        self.id = _SESSION_MARK

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


def recorded_stamp(recording: Recording, now: float | None = None) -> dict[str, object]:
    """When the run shown was recorded: minutes ago, and the UTC time for <time>."""
    now = time.time() if now is None else now
    utc = time.gmtime(recording.started)
    return {
        "minutes": max(0, int((now - recording.started) // 60)),
        "hhmm": time.strftime("%H:%M", utc),
        "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", utc),
    }


@router.post("/flow/{slug}/afresh")
async def record_afresh(request: Request, slug: str) -> Response:
    """"Record afresh": a private live run for this learner only, then its page.

    A form POST (same-origin checked by the security middleware), so it works without
    JavaScript; the redirect keeps the run under ?session= across a reload.
    """
    flow = _flow(request)
    if slug not in flow.scenarios:
        raise HTTPException(404, detail="scenario")
    lang = i18n.current_lang.get()
    session = await flow.fresh_session(slug, lang)
    return RedirectResponse(f"/flow/{slug}?session={session.id}&lang={lang}", status_code=303)

"""The FastAPI application: pages, the flow websocket, static files, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from app.config import Settings
from app.engines.tls import LabTLS
from app.explanations import Catalog
from app.lab.accounts_file import load_accounts
from app.lab.control import LabProcess
from app.lab.hub import Hub
from app.lab.live import LiveSink
from app.lab.live import router as lab_socket_router
from app.lab.routes import router as lab_router
from app.lab.world import lab_ports
from app.scenarios.model import load_all
from app.study.routes import router as study_router
from app.study.setup import init_study
from app.web import i18n
from app.web.flow_socket import router as socket_router
from app.web.health import EngineHealth
from app.web.pages import router as pages_router
from app.web.predict import router as predict_router
from app.web.security import SecurityMiddleware
from app.web.service import FlowService
from app.web.teacher import TeacherGate
from app.web.teacher import router as teacher_router
from app.web.templating import make_templates

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"
log = logging.getLogger("mailflow")


class MailFlowApp(FastAPI):
    """FastAPI with the security middleware outermost.

    Starlette puts user middleware inside its ServerErrorMiddleware, so a 500 would leave
    without the security headers; wrapping the whole stack covers every response.
    """

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return SecurityMiddleware(super().build_middleware_stack(), settings.public_origin)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tls = LabTLS.load(settings.tls_dir)
        app.state.tls = tls
        app.state.lab = None
        lab_started = None
        if settings.lab:
            # The mail listeners run in the lab process, never here; it starts while
            # this process prepares the rest, so the two start-ups overlap.
            app.state.hub = Hub()
            lab_dir = settings.data_dir / "lab"
            app.state.lab = LabProcess(
                lab_dir,
                tls,
                load_accounts(lab_dir / "accounts.toml"),
                LiveSink(app.state.hub),
                host=settings.host,
                ports=lab_ports(settings.lab_offset),
            )
            lab_started = asyncio.create_task(app.state.lab.start(), name="lab-start")
        try:
            app.state.flow = FlowService(
                tls=tls,
                runs_dir=settings.runs_dir,
                scenarios=load_all(),
                catalog=Catalog.load(),
                session_ttl=settings.session_ttl,
                max_sessions=settings.max_sessions,
            )
            app.state.health = EngineHealth(tls, settings.runs_dir)
            await app.state.health.check()
            app.state.study = init_study(settings)
            app.state.teacher = TeacherGate(settings, app.state.study.store.secret("teacher-key"))
            if lab_started is not None:
                await lab_started
            yield
        finally:
            if lab_started is not None and not lab_started.done():
                lab_started.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lab_started
            if app.state.lab is not None:
                await app.state.lab.close()

    app = MailFlowApp(title="MailFlow Lab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.templates = make_templates()
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.middleware("http")
    async def language(request: Request, call_next):  # type: ignore[no-untyped-def]
        query = request.query_params.get("lang")
        lang = i18n.pick_lang(query, request.cookies.get(i18n.COOKIE))
        token = i18n.current_lang.set(lang)
        try:
            response: Response = await call_next(request)
        finally:
            i18n.current_lang.reset(token)
        if query in i18n.LANGS:
            # Remember an explicit choice for the next visit.
            response.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/healthz")):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        lang = i18n.pick_lang(request.query_params.get("lang"), request.cookies.get(i18n.COOKIE))
        token = i18n.current_lang.set(lang)
        try:
            return app.state.templates.TemplateResponse(
                request,
                "error.html",
                {"status": exc.status_code, "detail": exc.detail, "lang": lang},
                status_code=exc.status_code,
            )
        finally:
            i18n.current_lang.reset(token)

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        flow: FlowService = request.app.state.flow
        health: EngineHealth = request.app.state.health
        engines = await health.check()
        ok = health.ok
        body = {
            "status": "ok" if ok else "failing",
            "engines": engines,
            "runs": flow.runs,
            "sessions": len(flow.sessions),
            "last_run_error": flow.last_error,
        }
        lab: LabProcess | None = request.app.state.lab
        if lab is not None:
            # The lab's listeners run in their own process; say whether it serves now
            # (a restart takes a moment) and how many times it was started.
            body["lab"] = {"serving": lab.ready.is_set(), "starts": lab.runs}
        return JSONResponse(body, status_code=200 if ok else 503)

    app.include_router(pages_router)
    app.include_router(socket_router)
    app.include_router(predict_router)
    app.include_router(study_router)
    app.include_router(lab_router)
    app.include_router(lab_socket_router)
    app.include_router(teacher_router)
    return app

"""The FastAPI application: pages, the flow websocket, static files, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

from app.bus import make_bus
from app.config import Settings
from app.engines.tls import LabTLS
from app.explanations import Catalog
from app.lab.accounts_file import load_accounts
from app.lab.bus_hub import PublishingHub, follow
from app.lab.control import LabProcess
from app.lab.hub import Hub
from app.lab.live import LiveSink
from app.lab.live import router as lab_socket_router
from app.lab.routes import router as lab_router
from app.rooms.hub import RoomHub
from app.rooms.limits import Buckets
from app.rooms.render import Renderer
from app.rooms.routes import router as rooms_router
from app.rooms.service import RoomService
from app.rooms.socket import router as room_socket_router
from app.rooms.state import Rooms
from app.scenarios.model import load_all
from app.study.routes import router as study_router
from app.study.setup import init_study
from app.topology import lab_ports
from app.web import i18n
from app.web.delivery import HashedStatic, RevalidateHTML
from app.web.flow_socket import router as socket_router
from app.web.health import EngineHealth
from app.web.lab_forward import LabForward
from app.web.language import Language
from app.web.pages import router as pages_router
from app.web.predict import router as predict_router
from app.web.record_worker import RecordWorker
from app.web.recordings import RecordingPool
from app.web.resources import STATIC_DIR
from app.web.security import SecurityMiddleware
from app.web.service import FlowService
from app.web.stage_pages import router as stage_router
from app.web.teacher import TeacherGate
from app.web.teacher import router as teacher_router
from app.web.templating import make_templates

log = logging.getLogger("mailflow")


class MailFlowApp(FastAPI):
    """FastAPI with the security middleware outermost.

    Starlette puts user middleware inside its ServerErrorMiddleware, so a 500 would leave
    without the security headers; wrapping the whole stack covers every response.
    """

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        secured: ASGIApp = SecurityMiddleware(
            super().build_middleware_stack(), settings.public_origin
        )
        forward = getattr(self.state, "lab_forward", None)
        if forward is not None:
            secured = LabForward(secured, forward)
        return WorkerHeader(secured)


class WorkerHeader:
    """`X-MailFlow-Worker: <pid>` on every HTTP response: which web worker served it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (b"x-mailflow-worker", str(os.getpid()).encode())

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_worker(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                # A request forwarded to the lab's worker keeps that worker's name.
                if not any(k.lower() == self.header[0] for k, _ in headers):
                    message["headers"] = [*headers, self.header]
            await send(message)

        await self.app(scope, receive, send_with_worker)


async def _first_probe(health: EngineHealth, lab_started: asyncio.Task[None] | None) -> None:
    """The start-up probe: in the lab process once it serves (the lifespan reports a
    lab that failed to start), else in the worker."""
    if lab_started is not None:
        with contextlib.suppress(Exception):
            await asyncio.shield(lab_started)
    await health.check()


def create_app(
    settings: Settings | None = None, *, lab_bridge: bool = False, lab_forward: Path | None = None
) -> FastAPI:
    """`lab_bridge`: another web worker runs the lab; its live view arrives over the bus.
    `lab_forward`: that worker's Unix socket, where `/lab` pages are forwarded."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tls = LabTLS.load(settings.tls_dir)  # before the worker, which loads the same files
        app.state.tls = tls
        bus = make_bus(settings.redis_url)
        await bus.start()
        app.state.lab = None
        lab_started = None
        lab_follow = None
        if not settings.lab and (lab_bridge or settings.redis_url):
            # The lab runs under another web worker (worker 0, or the compose file's lab
            # service): its live view reaches this one over Redis.
            app.state.hub = Hub()
            lab_follow = await follow(bus, app.state.hub)
        if settings.lab:
            # The mail listeners run in the lab process, never here; it starts while this
            # process prepares the rest, so the two start-ups overlap. With Redis, other
            # web workers show this lab's live view too.
            app.state.hub = PublishingHub(bus) if settings.redis_url else Hub()
            lab_dir = settings.data_dir / "lab"
            app.state.lab = LabProcess(
                lab_dir,
                tls,
                load_accounts(lab_dir / "accounts.toml"),
                LiveSink(app.state.hub),
                host=settings.lab_bind_host,
                ports=lab_ports(settings.lab_offset),
            )
            lab_started = asyncio.create_task(app.state.lab.start(), name="lab-start")
        # Scenario runs happen in the worker process, never here. The engine probe runs in
        # the lab process when there is one (app/web/health.py): the worker is started
        # for the pool alone, after start-up, and a cold start does not wait for it.
        worker = RecordWorker(
            settings.tls_dir,
            settings.runs_dir,
            workers=settings.record_workers,
            idle_stop=settings.record_idle_stop,
        )
        app.state.health = EngineHealth(worker, lab=app.state.lab)
        # The first probe runs while this process sets up the rest; /healthz answers
        # once it is in.
        first_check = asyncio.create_task(_first_probe(app.state.health, lab_started))
        scenarios = load_all()
        pool = RecordingPool(
            worker,
            [(slug, lang) for lang in i18n.LANGS for slug in scenarios],
            per_key=settings.record_pool,
            alone=[slug for slug, scenario in scenarios.items() if scenario.uses_smime],
        )
        app.state.flow = FlowService(
            recordings=pool,
            scenarios=scenarios,
            catalog=Catalog.load(),
            session_ttl=settings.session_ttl,
            max_sessions=settings.max_sessions,
        )
        app.state.study = init_study(settings)
        app.state.teacher = TeacherGate(settings, app.state.study.store.secret("teacher-key"))
        service = RoomService(bus, ttl=settings.room_ttl, max_students=settings.room_max_students)
        renderer = Renderer(app.state.templates, app.state.flow.catalog, app.state.study.content)
        app.state.rooms = Rooms(
            bus=bus,
            service=service,
            hub=RoomHub(service, renderer),
            renderer=renderer,
            flow=app.state.flow,
            study=app.state.study,
            joins=Buckets(settings.room_join_rate / 60.0, float(settings.room_join_rate)),
        )
        app.state.rooms.start()
        try:
            if lab_started is not None:
                await lab_started
            pool.start()
            yield
        finally:
            first_check.cancel()
            if lab_started is not None and not lab_started.done():
                lab_started.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lab_started
            await pool.close()
            await worker.close()
            if app.state.lab is not None:
                await app.state.lab.close()
            if isinstance(getattr(app.state, "hub", None), PublishingHub):
                await app.state.hub.close()
            if lab_follow is not None:
                await lab_follow.close()
            await app.state.rooms.close()
            # Off the loop: the database threads may still be finishing a request's write.
            await asyncio.to_thread(app.state.study.close)

    # No /openapi.json (nor /docs): the product has no public API, and building the
    # schema on the first request would cost the web's loop and memory for nobody.
    app = MailFlowApp(
        title="MailFlow Lab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    app.state.lab_forward = lab_forward
    # Delivery (app/web/delivery.py): static files from memory under content-hashed names,
    # HTML revalidated, text gzipped. GZip passes websockets through untouched, flushes each
    # chunk of a streamed body, skips text/event-stream and anything already encoded (the
    # static files come gzipped from memory). Below ~1 KB gzip saves less than it costs.
    static = HashedStatic(STATIC_DIR)
    app.state.templates = make_templates(static_url=static.url)
    app.mount("/static", static, name="static")
    app.add_middleware(RevalidateHTML)
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)

    app.add_middleware(Language)  # last added, so outermost: error pages are translated too

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/healthz")):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return app.state.templates.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status_code, "detail": exc.detail, "lang": i18n.current_lang.get()},
            status_code=exc.status_code,
        )

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        flow: FlowService = request.app.state.flow
        health: EngineHealth = request.app.state.health
        engines = await health.check()
        ok = health.ok
        body = {
            "status": "ok" if ok else "failing",
            "engines": engines,  # probed in the lab process, or else the worker
            "engines_probed_in": health.probed_in,
            "runs": flow.runs,
            "sessions": len(flow.sessions),
            "recordings": flow.recordings.stats(),
            "last_run_error": flow.last_error,
        }
        lab: LabProcess | None = request.app.state.lab
        if lab is not None:
            # The lab's listeners run in their own process; say whether it serves now
            # (a restart takes a moment) and how many times it was started.
            body["lab"] = {"serving": lab.ready.is_set(), "starts": lab.runs}
        return JSONResponse(body, status_code=200 if ok else 503)

    app.include_router(pages_router)
    app.include_router(stage_router)
    app.include_router(socket_router)
    app.include_router(predict_router)
    app.include_router(study_router)
    app.include_router(lab_router)
    app.include_router(lab_socket_router)
    app.include_router(teacher_router)
    app.include_router(rooms_router)
    app.include_router(room_socket_router)
    return app

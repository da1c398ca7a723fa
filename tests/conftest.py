"""Shared fixtures: the lab certificates and a real app served over loopback TCP."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from waiting import wait_started

from app.config import Settings
from app.engines.tls import LabTLS
from app.scenarios.model import load_all
from app.scenarios.runner import Recording, run_scenario
from app.web.app import create_app
from app.web.serving import uvicorn_config


@pytest.fixture(scope="session")
def lab_tls(tmp_path_factory: pytest.TempPathFactory) -> LabTLS:
    return LabTLS.load(tmp_path_factory.mktemp("tls"))


class LiveServer:
    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, port=0, lab=False)
        self.app = create_app(self.settings)
        # The product's uvicorn settings (app/web/serving.py): tests see what is served.
        config = uvicorn_config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{wait_started(self.server, self.thread)}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app (uvicorn, real SQLite file, real engines) on an ephemeral loopback port."""
    live = LiveServer(tmp_path_factory.mktemp("data"))
    url = live.start()
    yield url
    live.stop()


@pytest.fixture(scope="session")
def scenario_recording(
    lab_tls: LabTLS, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Recording]:
    """A real recording of a scenario by slug, each scenario run at most once per session."""
    scenarios = load_all()
    cache: dict[str, Recording] = {}

    def get(slug: str) -> Recording:
        if slug not in cache:
            runs = tmp_path_factory.mktemp(f"rec-{slug}")
            cache[slug] = asyncio.run(run_scenario(scenarios[slug], lab_tls, runs, "ja"))
        return cache[slug]

    return get


# --- Markers: every test is exactly one of unit, integration, browser -----------------------
# Assigned here from what a test really uses, so nobody has to remember to mark a new test:
#   browser      the test's module drives Chromium through Playwright;
#   integration  the test (its own code, module helpers it calls, or its fixtures) opens real
#                servers, sockets, processes or the served app (live_url, engines, TestClient);
#   unit         everything else: sans-IO cores, content, SQLite files, templates.
# `scripts/test -m unit` is the quick loop; `-m "not browser"` skips Chromium.

TESTS = Path(__file__).resolve().parent
# A PostgreSQL cluster is a real server process, whichever test asks for it.
INTEGRATION_FIXTURES = {"live_url", "postgres", "database_url"}
# A name a test reaches that comes from one of these modules means real I/O beyond a file.
REAL_IO = (
    "socket", "ssl", "subprocess", "smtplib", "poplib", "imaplib", "httpx", "websockets",
    "uvicorn", "aiosmtplib", "starlette.testclient", "fastapi.testclient", "app.engines",
    "app.lab.world", "app.lab.live", "app.scenarios.runner", "app.web.app", "app.world.world",
    "app.web.record_worker", "app.lab.control", "app.bus.redis", "app.study.schema",
    # the tests' own helpers that start servers: the served app, Redis, PostgreSQL, the lab
    "served", "redis_server", "rooms_client", "lab_server", "pg_cluster",
)  # fmt: skip


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _reaches_real_io(func: object, module: types.ModuleType, seen: set[int]) -> bool:
    """Whether `func`, or a function of its module it calls, names something from REAL_IO."""
    inner = getattr(getattr(func, "hypothesis", None), "inner_test", None)
    func = inspect.unwrap(inner or func)  # type: ignore[arg-type]
    code = getattr(func, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    for name in _code_names(code):
        obj = vars(module).get(name)
        if obj is None:
            continue
        origin = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "") or ""
        if origin.startswith(REAL_IO):
            return True
        # A function of the test's module or of another module of tests/ (a helper), or
        # the methods of such a class (one that starts `python -m app`, say), followed in
        # the module it comes from.
        home = module if origin == module.__name__ else sys.modules.get(origin)
        if home is None or Path(getattr(home, "__file__", None) or "/").parent != TESTS:
            continue
        inner = [obj] if inspect.isfunction(obj) else []
        if inspect.isclass(obj):
            inner = [f for f in vars(obj).values() if inspect.isfunction(f)]
        if any(_reaches_real_io(f, home, seen) for f in inner):
            return True
    return False


def _kind(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    if module is None:
        return "unit"
    if item.get_closest_marker("browser") or any(
        (getattr(v, "__module__", "") or "").startswith("playwright") for v in vars(module).values()
    ):
        return "browser"
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & INTEGRATION_FIXTURES:
        return "integration"
    seen: set[int] = set()
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in fixtures:
        for fixdef in (info.name2fixturedefs.get(name, ()) if info else ()):
            fmod = sys.modules.get(getattr(fixdef.func, "__module__", ""), module)
            if _reaches_real_io(fixdef.func, fmod, seen):
                return "integration"
    if any(f is not None and _reaches_real_io(f, module, seen) for f in funcs):
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = _kind(item)
        if not item.get_closest_marker(kind):
            item.add_marker(getattr(pytest.mark, kind))


# ---- the learner database: SQLite and PostgreSQL ----


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster (Debian's server, Unix socket only) for the session:
    a pg_cluster.Cluster, started only when a test asks for PostgreSQL."""
    from pg_cluster import Cluster  # tests/ is on sys.path, as for served.py

    cluster = Cluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty study database of each kind: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres").new_database()


# -- Chromium (browser tests) --------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from chromium import chromium  # Playwright only where a browser test asks for it

    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh context and page; the module's PAGE_OPTIONS (default 1280 × 900) set the
    context. Any uncaught error on the page fails the test."""
    options = getattr(request.module, "PAGE_OPTIONS", {"viewport": {"width": 1280, "height": 900}})
    context = browser.new_context(**options)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors

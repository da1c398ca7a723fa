"""Shared fixtures: the lab certificates and a real app served over loopback TCP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.config import Settings
from app.engines.tls import LabTLS
from app.scenarios.model import load_all
from app.scenarios.runner import Recording, run_scenario
from app.web.app import create_app


@pytest.fixture(scope="session")
def lab_tls(tmp_path_factory: pytest.TempPathFactory) -> LabTLS:
    return LabTLS.load(tmp_path_factory.mktemp("tls"))


class LiveServer:
    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, port=0, lab=False)
        self.app = create_app(self.settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", ws_max_size=64 * 1024
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

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

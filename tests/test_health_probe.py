"""/healthz with the lab on: the engine probe runs in the lab process, so neither a cold
start nor a health checker starts the recording worker (about 40 MB) for it.

`python -m app` as a user starts it, with MAILFLOW_RECORD_POOL=0 so nothing else would
start the worker either; then the app's process tree is read from /proc.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_lab_layout import children, cmdline
from test_lab_process import App, free_offset

from app.engines.tls import LabTLS


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    offset, web = free_offset()
    running = App(tmp_path / "data", offset, web, MAILFLOW_RECORD_POOL="0").start()
    yield running
    running.stop()


def test_the_lab_process_answers_the_engine_probe_and_no_worker_starts(app: App) -> None:
    assert app.proc is not None
    body = httpx.get(f"http://127.0.0.1:{app.web}/healthz", timeout=30).json()
    assert body["status"] == "ok" and body["engines_probed_in"] == "lab"
    assert set(body["engines"]) == {"submission", "mx-b", "lmtp-b", "pop3-b", "imap-b"}
    assert body["recordings"]["worker"] == "stopped"
    kinds = sorted(cmdline(p).split()[-1] for p in children(app.proc.pid))
    assert kinds == ["app.lab.process"]
    # The probe's throwaway world is gone again; the lab keeps only its own files.
    assert list((app.data / "lab" / "probe").iterdir()) == []


async def test_the_probe_makes_and_removes_its_world_off_the_event_loop(
    tmp_path: Path, lab_tls: LabTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the lab process the loop serves real mail programs: the probe's directory is
    made and removed in another thread. The real functions run; the spies only note
    which thread called them."""
    import shutil
    import tempfile
    import threading

    from app import engine_probe

    loop_thread = threading.get_ident()
    callers: dict[str, int] = {}
    real_mkdtemp, real_rmtree = tempfile.mkdtemp, shutil.rmtree

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        callers["mkdtemp"] = threading.get_ident()
        return real_mkdtemp(*args, **kwargs)

    def rmtree(*args: Any, **kwargs: Any) -> None:
        callers["rmtree"] = threading.get_ident()
        real_rmtree(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    runs = tmp_path / "probe"
    result = await engine_probe.probe(runs, lab_tls)
    assert set(result.values()) == {"ok"}
    assert set(callers) == {"mkdtemp", "rmtree"}
    assert loop_thread not in callers.values()
    assert list(runs.iterdir()) == []  # the world is gone again

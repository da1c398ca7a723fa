"""/healthz with the lab on: the engine probe runs in the lab process, so neither a cold
start nor a health checker starts the recording worker (about 40 MB) for it.

`python -m app` as a user starts it, with MAILFLOW_RECORD_POOL=0 so nothing else would
start the worker either; then the app's process tree is read from /proc.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_lab_layout import children, cmdline
from test_lab_process import App, free_offset


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

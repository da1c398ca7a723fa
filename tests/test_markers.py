"""Every test carries exactly one of the markers unit / integration / browser, assigned from
what it really uses (tests/conftest.py), so `scripts/test -m unit` is the quick loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("unit", "integration", "browser")
FILES = [
    "tests/test_pop3_core.py",  # sans-IO core: unit
    "tests/test_pop3_server.py",  # real TCP listeners: integration
    "tests/test_web_pages.py",  # template rendering (unit) and live_url pages (integration)
    "tests/test_study_browser.py",  # Chromium: browser
    # servers started through the tests' helpers: `python -m app` (test_lab_process.App),
    # the served app, Redis: integration, though the test's own module names none of them
    "tests/test_lab_layout.py",
    "tests/test_bus_redis.py",
]
# A plugin for the collecting pytest: prints each test's kind markers as one JSON line.
PLUGIN = f"""
import json
def pytest_collection_finish(session):
    kinds = {{i.nodeid: [m.name for m in i.iter_markers() if m.name in {KINDS!r}]
             for i in session.items}}
    print("KINDS " + json.dumps(kinds))
"""


def test_each_test_is_exactly_one_kind(tmp_path: Path) -> None:
    (tmp_path / "print_kinds.py").write_text(PLUGIN)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "print_kinds",
         "--collect-only", "-q", *FILES],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("KINDS ")]
    kinds: dict[str, list[str]] = json.loads(line.removeprefix("KINDS "))
    assert len(kinds) > 50
    assert {n: k for n, k in kinds.items() if len(set(k)) != 1} == {}

    def files(kind: str) -> set[str]:
        return {n.split("::")[0] for n, k in kinds.items() if k[0] == kind}

    assert files("browser") == {"tests/test_study_browser.py"}
    assert files("integration") == {
        "tests/test_pop3_server.py",
        "tests/test_web_pages.py",
        "tests/test_lab_layout.py",
        "tests/test_bus_redis.py",
    }
    assert files("unit") == {"tests/test_pop3_core.py", "tests/test_web_pages.py"}

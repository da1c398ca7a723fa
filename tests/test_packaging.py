"""The wheel is the product: it carries templates/ and static/, and an installed app serves
every page from any working directory (no reliance on the source tree beside it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["/", "/flow", "/flow/basic-pop3", "/quiz", "/me", "/lab", "/static/css/app.css"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a clean copy of the sources (pip builds in the tree it is given)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("app", "templates", "static"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("mailflow_lab-*.whl")
    return built


def test_the_wheel_carries_every_template_and_static_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("templates", "static"):
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert f"app/{folder}/{path.relative_to(ROOT / folder).as_posix()}" in names
    assert "app/content/scenarios/basic-pop3.toml" in names
    assert "app/study/migrations/versions/0001_study_tables.py" in names


SERVE_FROM_ELSEWHERE = """
import json, sys
from pathlib import Path
import app
from app.config import Settings
from app.web.app import create_app
from starlette.testclient import TestClient

site, data = Path(sys.argv[1]), Path(sys.argv[2])
assert Path(app.__file__).resolve().is_relative_to(site.resolve()), app.__file__
result = {}
with TestClient(create_app(Settings(data_dir=data, port=0, lab=False))) as client:
    for path in json.loads(sys.argv[3]):
        r = client.get(path)
        result[path] = [r.status_code, r.headers.get("content-type", "")]
print(json.dumps(result))
"""


def test_the_installed_app_serves_every_page_from_another_directory(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # PYTHONPATH puts the installed copy ahead of the development checkout.
    run = subprocess.run(
        [sys.executable, "-c", SERVE_FROM_ELSEWHERE, str(site), str(tmp_path / "data"),
         json.dumps(PAGES)],
        cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    served = json.loads(run.stdout.strip().splitlines()[-1])
    for path in PAGES:
        status, ctype = served[path]
        assert status == 200, (path, status)
        assert ctype.startswith("text/css" if path.endswith(".css") else "text/html"), path


ROUTES = """
import json, sys
sys.path.insert(0, sys.argv[1])
from starlette.testclient import TestClient
from app.config import Settings
from app.web.app import create_app
import quiz_app

status = []
from pathlib import Path
for app in (create_app(Settings(data_dir=Path(sys.argv[2]), port=0, lab=False)),
            quiz_app.create_bench_app()):
    with TestClient(app) as client:
        r = client.post("/bench/quiz/ports/answer-nodb", data={"token": "x", "answer": "25"})
        status.append(r.status_code)
print(json.dumps(status))
"""


def test_the_bench_only_route_is_mounted_by_the_benchmark_never_by_the_product(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", ROUTES, str(ROOT / "bench"), str(tmp_path)],
        cwd=ROOT, env={**os.environ, "MAILFLOW_BENCH": "1", "MAILFLOW_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    product, bench = json.loads(run.stdout.strip().splitlines()[-1])
    assert product == 404  # not even with the old switch MAILFLOW_BENCH=1
    assert bench == 400  # there, and it read the (bad) question token
    assert not list((ROOT / "app").rglob("bench*.py"))

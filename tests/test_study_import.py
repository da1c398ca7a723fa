"""Progress import against hostile and old files: 422 with a reason, nothing stored changes,
the learner's pages keep working; an earlier version's export still imports."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.study.content import content
from app.study.portquiz import PortQuestion, now_ms
from app.web.app import create_app

C = content()


@pytest.fixture(autouse=True)
def _no_fuzz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLOW_FSRS_FUZZ", "0")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path, lab=False))) as c:
        yield c


def answer_port(c: TestClient, card: str = "110") -> None:
    q = PortQuestion(card, "svc2port", (), None, "srs", now_ms(), f"t{now_ms()}{card}")
    token = c.app.state.study.questions.dumps(q.to_token())  # type: ignore[attr-defined]
    r = c.post("/quiz/ports/answer", data={"token": token, "answer": card})
    assert r.status_code == 200


def answer_exam(c: TestClient) -> None:
    run_url = c.post("/quiz/exam/start", data={"mode": "mini"}, follow_redirects=False)
    page = c.get(run_url.headers["location"]).text
    pos = re.search(r'name="position" value="(\d+)"', page).group(1)
    qid = re.search(r'name="question" value="([^"]+)"', page).group(1)
    r = c.post(
        f"{run_url.headers['location']}/answer",
        data={"position": pos, "question": qid, "choice": str(C.questions[qid].answer)},
    )
    assert r.status_code == 200


@pytest.fixture
def exported(client: TestClient) -> dict[str, Any]:
    answer_port(client)
    answer_exam(client)
    doc = client.get("/me/export").json()
    assert doc["answers"] and doc["cards"] and doc["exam_runs"]
    return doc


def unchanged(c: TestClient, before: dict[str, Any]) -> None:
    after = c.get("/me/export").json()
    for key in ("answers", "cards", "speed_runs", "exam_runs"):
        assert after[key] == before[key], key
    assert c.get("/quiz/stats").status_code == 200
    assert c.get("/me").status_code == 200


def mutate(doc: dict[str, Any], change) -> bytes:
    doc = copy.deepcopy(doc)
    out = change(doc)
    return out if isinstance(out, bytes) else json.dumps(doc).encode()


def _set(path: str, value: Any):
    def change(doc: dict[str, Any]) -> None:
        *parts, last = path.split(".")
        node: Any = doc
        for p in parts:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value

    return change


def _text(doc: dict[str, Any], old: str, new: str) -> bytes:
    return json.dumps(doc).replace(old, new, 1).encode()


HOSTILE = {
    "deep nesting": lambda d: b'{"format": "mailflow-lab/study-progress", "version": 1, "x": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    "100k-digit number": lambda d: _text(d, '"ms": ', '"ms": ' + "9" * 100_000),
    "huge float": lambda d: _text(d, '"difficulty": ', '"difficulty": 1e400, "x": '),
    "reps 10**30": _set("cards.0.reps", 10**30),
    "year 9999": _set("cards.0.due", "9999-12-31T23:59:59+00:00"),
    "answer in year 9999": _set("answers.0.at", "9999-01-01T00:00:00+00:00"),
    "correct yes": _set("answers.0.correct", "yes"),
    "exam correct 1": _set("exam_runs.0.answers.0.correct", 1),
    "unknown topic": _set("exam_runs.0.topic", "no-such-topic"),
    "duplicate keys": lambda d: _text(d, '"correct": ', '"correct": false, "correct": '),
    "Infinity": _set("cards.0.stability", float("inf")),
    "NaN": _set("cards.0.difficulty", float("nan")),
    "score as text": _set("answers.0.ms", "12"),
    "date as number": _set("answers.0.at", 1_700_000_000),
    "wrong kind for exam": _set("answers.1.kind", "svc2port"),
    # One position answered twice: the run's answers are keyed by position (the first
    # answer stands), so the file is refused, not a 500 from the database's key.
    "exam position twice": lambda d: d["exam_runs"][0]["answers"].append(
        dict(d["exam_runs"][0]["answers"][0])
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_get_422_with_a_reason_and_change_nothing(
    client: TestClient, exported: dict[str, Any], case: str
) -> None:
    body = mutate(exported, HOSTILE[case])
    r = client.post("/me/import", files={"file": ("p.json", body)})
    assert r.status_code == 422 and "何も変更していません" in r.text
    assert "詳細" in r.text or "JSON" in r.text  # the reason is shown
    unchanged(client, exported)
    api = client.post("/api/me/import", content=body, headers={"content-type": "application/json"})
    assert api.status_code == 422 and api.json()["error"] in ("invalid", "not_json")
    assert api.json()["detail"] or api.json()["error"] == "not_json"
    unchanged(client, exported)
    answer_port(client, "143")  # answering still works for this learner
    assert client.get("/quiz/stats").status_code == 200


def test_an_earlier_versions_export_imports_and_skips_what_no_longer_exists(
    client: TestClient, exported: dict[str, Any]
) -> None:
    old = copy.deepcopy(exported)
    gone = dict(old["answers"][-1], item="question-removed-01", nonce=None)
    old["answers"].append(gone)
    old["answers"].append(dict(old["answers"][0], item="9999", nonce=None))  # a removed card
    old["cards"].append(dict(old["cards"][0], card="9999"))
    old["exam_runs"].append(
        {**old["exam_runs"][0], "questions": ["question-removed-01"], "answers": []}
    )
    body = json.dumps(old).encode()
    # Another learner's cookies on the running app (a second lifespan would close its database).
    fresh = TestClient(client.app)
    r = fresh.post("/me/import", files={"file": ("old.json", body)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/me?imported=1&skipped=4"
    page = fresh.get(r.headers["location"]).text
    assert "学習記録をインポートしました" in page and "記録 4 件は、読み込まずに" in page
    again = fresh.get("/me/export").json()
    assert again["answers"] == exported["answers"] and again["cards"] == exported["cards"]
    assert len(again["exam_runs"]) == 1
    assert fresh.get("/quiz/stats").status_code == 200
    api = client.post("/api/me/import", content=body, headers={"content-type": "application/json"})
    assert api.status_code == 200
    assert api.json()["skipped"] == {"answers": 2, "cards": 1, "exam_runs": 1}
    assert api.json()["imported"]["answers"] == len(exported["answers"])


def test_the_api_import_wants_json(client: TestClient, exported: dict[str, Any]) -> None:
    body = json.dumps(exported).encode()
    r = client.post("/api/me/import", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 415

"""The study pages and API over HTTP, against the real app on a real SQLite file and on a
real PostgreSQL database (the `database_url` fixture runs each test on both)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from app.config import Settings
from app.study.content import content
from app.study.learner import COOKIE
from app.study.portquiz import PortQuestion, now_ms
from app.study.setup import Study
from app.study.store import utcnow
from app.web.app import create_app

C = content()


@pytest.fixture(autouse=True)
def _no_fuzz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLOW_FSRS_FUZZ", "0")


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, lab=False, database_url=database_url)
    with TestClient(create_app(settings)) as c:
        yield c


def study(c: TestClient) -> Study:
    return c.app.state.study  # type: ignore[attr-defined]


def token_of(html: str) -> str:
    m = re.search(r'name="token" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def question_of(c: TestClient, html: str) -> PortQuestion:
    q = PortQuestion.from_token(study(c).questions.loads(token_of(html)), C)
    assert q is not None
    return q


def right_answer(q: PortQuestion) -> str:
    card = C.cards[q.card]
    return card.service if q.kind == "port2svc" else str(card.port)


def crafted(c: TestClient, card: str, kind: str, options: tuple[int, ...] = ()) -> str:
    q = PortQuestion(card, kind, options, None, "srs", now_ms(), f"t{now_ms()}{card}{kind}")
    return study(c).questions.dumps(q.to_token())


def progress(c: TestClient) -> dict[str, int]:
    return c.get("/api/me/progress").json()


def test_pages_render_in_japanese_and_english(client: TestClient) -> None:
    for path in ("/quiz", "/quiz/ports", "/quiz/speed", "/quiz/stats", "/quiz/exam", "/me"):
        ja = client.get(path, params={"lang": "ja"})
        assert ja.status_code == 200, path
        assert 'lang="ja"' in ja.text and "クイズ" in ja.text, path
        en = client.get(path, params={"lang": "en"})
        assert en.status_code == 200 and "My progress" in en.text, path


def test_new_visitor_has_all_cards_due_and_nothing_stored(client: TestClient) -> None:
    assert progress(client) == {"answered": 0, "correct": 0, "due": 7}
    client.get("/quiz/ports")
    assert COOKIE not in client.cookies  # reading never creates a learner


def test_port_answer_is_committed_and_scheduled(client: TestClient) -> None:
    page = client.get("/quiz/ports")
    q = question_of(client, page.text)
    r = client.post(
        "/quiz/ports/answer", data={"token": token_of(page.text), "answer": right_answer(q)}
    )
    assert r.status_code == 200
    assert "正解！" in r.text and f"/flow/{C.cards[q.card].link.scenario}?event=" in r.text
    assert COOKIE in client.cookies
    assert progress(client) == {"answered": 1, "correct": 1, "due": 6}
    # The same form sent again (reload) does not count twice.
    client.post(
        "/quiz/ports/answer", data={"token": token_of(page.text), "answer": right_answer(q)}
    )
    assert progress(client)["answered"] == 1


def test_a_miss_shows_our_mnemonic_and_the_scenario_step(client: TestClient) -> None:
    tok = crafted(client, "995", "svc2port")
    r = client.post("/quiz/ports/answer", data={"token": tok, "answer": "１１０"})
    assert r.status_code == 200
    assert "残念" in r.text and C.cards["995"].mnemonic["ja"] in r.text
    assert html.escape(C.cards["995"].link.href) in r.text
    assert progress(client) == {"answered": 1, "correct": 0, "due": 6}


def test_typed_answers_are_normalised(client: TestClient) -> None:
    r = client.post(
        "/quiz/ports/answer",
        data={"token": crafted(client, "995", "port2svc"), "answer": "ＰＯＰ３Ｓ"},
    )
    assert "正解！" in r.text
    r = client.post(
        "/quiz/ports/answer",
        data={"token": crafted(client, "993", "svc2port"), "answer": "９９３番"},
    )
    assert "正解！" in r.text


def test_user_input_is_escaped(client: TestClient) -> None:
    r = client.post(
        "/quiz/ports/answer",
        data={"token": crafted(client, "25", "port2svc"), "answer": "<script>alert(1)</script>"},
    )
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;alert(1)" in r.text


def test_unreadable_answers_keep_the_question(client: TestClient) -> None:
    tok = crafted(client, "587", "svc2port")
    r = client.post("/quiz/ports/answer", data={"token": tok, "answer": "submission"})
    assert r.status_code == 422
    assert "ポート番号を数字で入力" in r.text and token_of(r.text) == tok
    assert 'value="submission"' in r.text
    r = client.post("/quiz/ports/answer", data={"token": tok, "answer": "  "})
    assert r.status_code == 422
    tok = crafted(client, "587", "mc_svc2port", (25, 587, 465, 443))
    assert (
        client.post("/quiz/ports/answer", data={"token": tok, "answer": "110"}).status_code == 422
    )
    assert progress(client)["answered"] == 0


def test_a_forged_question_is_a_clear_400(client: TestClient) -> None:
    r = client.post("/quiz/ports/answer", data={"token": "forged.token", "answer": "25"})
    assert r.status_code == 400 and "読み込めません" in r.text
    assert client.post("/quiz/ports/answer", data={}).status_code == 400


def test_htmx_gets_a_fragment(client: TestClient) -> None:
    tok = crafted(client, "143", "svc2port")
    r = client.post(
        "/quiz/ports/answer", data={"token": tok, "answer": "143"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200 and "<html" not in r.text and "data-next" in r.text


def test_tampered_or_unknown_cookie_starts_a_fresh_learner(client: TestClient) -> None:
    client.post(
        "/quiz/ports/answer", data={"token": crafted(client, "25", "svc2port"), "answer": "25"}
    )
    good = client.cookies[COOKIE]
    client.cookies.clear()
    client.cookies.set(COOKIE, good[:-3] + "xyz")
    assert progress(client) == {"answered": 0, "correct": 0, "due": 7}
    assert client.get("/me").status_code == 200
    r = client.post(
        "/quiz/ports/answer", data={"token": crafted(client, "25", "svc2port"), "answer": "25"}
    )
    fresh = r.cookies.get(COOKIE)
    assert r.status_code == 200 and fresh and fresh != good
    client.cookies.clear()
    client.cookies.set(COOKIE, fresh)
    assert progress(client)["answered"] == 1
    # Signed by us but unknown to this database (e.g. it was reset): also fresh, no error.
    signer = study(client).cookies.signer
    client.cookies.clear()
    client.cookies.set(COOKIE, signer.sign("0" * 8 + "-0000-4000-8000-" + "0" * 12).decode())
    assert progress(client)["answered"] == 0
    client.post(
        "/quiz/ports/answer", data={"token": crafted(client, "25", "svc2port"), "answer": "25"}
    )
    assert progress(client)["answered"] == 1


def test_progress_survives_an_app_restart(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path, lab=False, database_url=database_url)
    with TestClient(create_app(settings)) as first:
        first.post(
            "/quiz/ports/answer", data={"token": crafted(first, "465", "svc2port"), "answer": "465"}
        )
        cookie = first.cookies[COOKIE]
    # A new app object (its own connections) on the same database.
    with TestClient(create_app(settings)) as second:
        second.cookies.set(COOKIE, cookie)
        assert progress(second) == {"answered": 1, "correct": 1, "due": 6}
        kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        assert study(second).db.kind == kind


def test_the_default_database_is_a_file_in_the_data_dir(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, lab=False))) as c:
        c.post("/quiz/ports/answer", data={"token": crafted(c, "25", "svc2port"), "answer": "25"})
    assert (tmp_path / "mailflow.db").exists()


def test_database_url_setting_is_used(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "progress.db"
    settings = Settings(data_dir=tmp_path / "data", lab=False, database_url=f"sqlite:///{db}")
    with TestClient(create_app(settings)) as c:
        c.post("/quiz/ports/answer", data={"token": crafted(c, "25", "svc2port"), "answer": "25"})
    assert db.exists() and not (tmp_path / "data" / "mailflow.db").exists()


def _do_mini_exam(c: TestClient, wrong_first: int) -> str:
    r = c.post("/quiz/exam/start", data={"mode": "mini"}, follow_redirects=False)
    assert r.status_code == 303
    run_url = r.headers["location"]
    for i in range(10):
        page = c.get(run_url)
        assert f"第 {i + 1} 問／全 10 問" in page.text
        pos = re.search(r'name="position" value="(\d+)"', page.text).group(1)
        qid = re.search(r'name="question" value="([^"]+)"', page.text).group(1)
        q = C.questions[qid]
        choice = (q.answer + 1) % 4 if i < wrong_first else q.answer
        fb = c.post(
            f"{run_url}/answer", data={"position": pos, "question": qid, "choice": str(choice)}
        )
        assert fb.status_code == 200
        for why in q.explanations["ja"]:
            assert str(escape(why)) in fb.text  # as the page escapes it (e.g. ' in a name)
        if q.link is not None:  # law and office practice have no scenario to link
            assert html.escape(q.link.href) in fb.text
        else:
            assert "/flow/" not in fb.text
    return run_url


def test_mini_exam_result_and_review_of_misses(client: TestClient) -> None:
    run_url = _do_mini_exam(client, wrong_first=3)
    result = client.get(run_url)
    assert "10 問中 7 問正解（70%）" in result.text
    assert progress(client)["answered"] == 10 and progress(client)["correct"] == 7
    assert "間違えた問題を復習（3 問）" in client.get("/quiz/exam").text
    r = client.post("/quiz/exam/start", data={"mode": "review"}, follow_redirects=False)
    review = r.headers["location"]
    assert "全 3 問" in client.get(review).text
    # Another browser cannot open this learner's sitting.
    with TestClient(client.app) as other:
        assert other.get(run_url).status_code == 404


def test_exam_answers_are_validated_and_not_double_counted(client: TestClient) -> None:
    r = client.post(
        "/quiz/exam/start", data={"mode": "topic", "topic": "mime"}, follow_redirects=False
    )
    run_url = r.headers["location"]
    page = client.get(run_url).text
    qid = re.search(r'name="question" value="([^"]+)"', page).group(1)
    bad = client.post(f"{run_url}/answer", data={"position": "0", "question": qid, "choice": "7"})
    assert bad.status_code == 422 and "ア〜エ" in bad.text
    assert (
        client.post(
            f"{run_url}/answer", data={"position": "0", "question": "nope", "choice": "1"}
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"{run_url}/answer", data={"position": "x", "question": qid, "choice": "1"}
        ).status_code
        == 422
    )
    for _ in range(2):
        client.post(f"{run_url}/answer", data={"position": "0", "question": qid, "choice": "1"})
    assert progress(client)["answered"] == 1
    assert (
        client.post("/quiz/exam/start", data={"mode": "topic", "topic": "<b>x"}).status_code == 422
    )
    assert client.post("/quiz/exam/start", data={"mode": "review"}).status_code in (303, 200, 422)


def test_speed_round_scores_and_keeps_the_best(client: TestClient) -> None:
    r = client.post("/quiz/speed/start", follow_redirects=False)
    run_url = r.headers["location"]
    run_id = run_url.rsplit("/", 1)[1]
    page = client.get(run_url).text
    for _ in range(3):
        q = question_of(client, page)
        page = client.post(
            f"{run_url}/answer", data={"token": token_of(page), "answer": right_answer(q)}
        ).text
    assert "得点: <strong>3</strong>" in page or "得点" in page
    # The minute passes.
    with study(client).db.write() as s:
        s.execute(
            "UPDATE speed_run SET started_at = :at WHERE id = :id",
            {"at": utcnow() - timedelta(seconds=120), "id": run_id},
        )
    late = question_of(client, page)
    over = client.post(
        f"{run_url}/answer", data={"token": token_of(page), "answer": right_answer(late)}
    ).text
    assert "時間切れ" in over and "得点：3" in over and "自己ベスト更新" in over
    assert "自己ベスト：3" in client.get("/quiz/speed").text


def test_stats_page_draws_charts(client: TestClient) -> None:
    for answer in ("25", "26"):
        client.post(
            "/quiz/ports/answer",
            data={"token": crafted(client, "25", "svc2port"), "answer": answer},
        )
    page = client.get("/quiz/stats").text
    assert page.count("<svg") >= 2 and 'class="bar"' in page
    assert "50% (1/2)" in page


def test_export_import_round_trip_to_a_new_browser(client: TestClient) -> None:
    client.post(
        "/quiz/ports/answer", data={"token": crafted(client, "993", "svc2port"), "answer": "993"}
    )
    _do_mini_exam(client, wrong_first=2)
    before = progress(client)
    exported = client.get("/me/export")
    assert exported.headers["content-disposition"].startswith("attachment")
    doc = exported.json()
    assert doc["format"] == "mailflow-lab/study-progress" and len(doc["answers"]) == 11
    with TestClient(client.app) as fresh:
        r = fresh.post(
            "/me/import", files={"file": ("p.json", exported.content)}, follow_redirects=False
        )
        assert r.status_code == 303
        assert progress(fresh) == before
        assert "間違えた問題を復習（2 問）" in fresh.get("/quiz/exam").text
        again = fresh.get("/me/export").json()
        assert again["cards"] == doc["cards"]
        assert "学習記録をインポートしました" in fresh.get("/me?imported=1").text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "ファイルが空です"),
        (b"{not json", "JSON 形式ではありません"),
        (b"\xff\xfe\x00", "JSON 形式ではありません"),
        (json.dumps({"hello": "world"}).encode(), "MailFlow Lab の学習記録ではありません"),
        (json.dumps([1, 2]).encode(), "MailFlow Lab の学習記録ではありません"),
        (
            json.dumps({"format": "mailflow-lab/study-progress", "version": 9}).encode(),
            "より新しいバージョン",
        ),
        (
            json.dumps(
                {
                    "format": "mailflow-lab/study-progress",
                    "version": 1,
                    "exported_at": "2026-01-01T00:00:00Z",
                    "answers": [{"mode": "hack"}],
                    "cards": [],
                    "speed_runs": [],
                    "exam_runs": [],
                }
            ).encode(),
            "壊れている",
        ),
        (
            json.dumps(
                {
                    "format": "mailflow-lab/study-progress",
                    "version": 1,
                    "exported_at": "2026-01-01T00:00:00Z",
                    "answers": [],
                    "cards": [{"card": "25", "state": 9, "due": "2026-01-01T00:00:00Z"}],
                    "speed_runs": [],
                    "exam_runs": [],
                }
            ).encode(),
            "壊れている",
        ),
    ],
)
def test_malformed_imports_change_nothing(client: TestClient, body: bytes, message: str) -> None:
    client.post(
        "/quiz/ports/answer", data={"token": crafted(client, "110", "svc2port"), "answer": "110"}
    )
    before = client.get("/me/export").json()
    r = client.post("/me/import", files={"file": ("x.json", body)})
    assert r.status_code == 422 and message in r.text and "何も変更していません" in r.text
    after = client.get("/me/export").json()
    assert after["answers"] == before["answers"] and after["cards"] == before["cards"]


def test_import_without_a_file_is_a_clear_422(client: TestClient) -> None:
    r = client.post("/me/import", data={})
    assert r.status_code == 422 and "ファイルを選んで" in r.text


def test_api_questions_hide_answers_unless_asked(client: TestClient) -> None:
    data = client.get("/api/exam/questions").json()
    assert data["count"] >= 60
    q = data["questions"][0]
    assert {"id", "level", "topics", "ja", "en", "link"} <= set(q)
    assert "answer" not in q and "explanations" not in q["ja"]
    assert len(q["ja"]["choices"]) == 4 and q["en"]["stem"]
    full = client.get("/api/exam/questions", params={"with_answers": "1"}).json()
    assert full["questions"][0]["answer"] in "アイウエ"
    assert len(full["questions"][0]["en"]["explanations"]) == 4
    mime = client.get("/api/exam/questions", params={"topic": "mime"}).json()
    assert mime["count"] >= 3 and all("mime" in x["topics"] for x in mime["questions"])


def test_bench_route_is_not_mounted_normally(client: TestClient) -> None:
    r = client.post("/bench/quiz/ports/answer-nodb", data={"token": "x", "answer": "1"})
    assert r.status_code in (404, 405)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/quiz/ports/answer?lang=en", "/quiz/ports?lang=en"),
        ("/me/import", "/me"),
        ("/quiz/exam/start", "/quiz/exam"),
        ("/quiz/speed/abc/answer", "/quiz/speed/abc"),
        ("/quiz/exam/run/abc/answer?lang=ja", "/quiz/exam/run/abc?lang=ja"),
    ],
)
def test_get_on_a_form_address_goes_back_to_the_page(
    client: TestClient, path: str, target: str
) -> None:
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == target


def test_problems_come_as_fragments_for_htmx(client: TestClient) -> None:
    r = client.post(
        "/quiz/ports/answer", data={"token": "bad", "answer": "1"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 400 and "<html" not in r.text and "data-next" in r.text


def test_a_question_removed_from_the_bank_is_dropped_without_error(client: TestClient) -> None:
    # A learner with history, then their database also holds a question and a card that the
    # bank no longer has (rewritten questions keep their ids; removed ones vanish like this).
    client.post(
        "/quiz/ports/answer", data={"token": crafted(client, "25", "svc2port"), "answer": "25"}
    )
    with study(client).db.write() as s:
        [(learner,)] = s.all("SELECT id FROM learner")
        now = utcnow()
        kept = sorted(C.questions)[:2]
        s.execute(
            "INSERT INTO exam_run (id, learner_id, mode, topic, questions, started_at)"
            " VALUES (:id, :lid, 'mini', NULL, :questions, :now)",
            {"id": "r" * 24, "lid": learner, "questions": " ".join(["gone-01", *kept]), "now": now},
        )
        s.execute(
            "INSERT INTO answer (learner_id, mode, item, kind, given, correct, at, nonce)"
            " VALUES (:lid, 'exam', 'gone-01', 'mini', '1', :no, :now, 'rrr:0')",
            {"lid": learner, "no": False, "now": now},
        )
        s.execute(
            "INSERT INTO card_state (learner_id, card, state, due, reps)"
            " VALUES (:lid, '2525', 2, :now, 3)",
            {"lid": learner, "now": now},
        )
        s.execute(
            "INSERT INTO exam_answer (run_id, position, question, choice, correct)"
            " VALUES (:id, 0, 'gone-01', 1, :no)",
            {"id": "r" * 24, "no": False},
        )
    for path in ("/quiz", "/quiz/ports", "/quiz/stats", "/quiz/exam", "/me", "/me/export"):
        assert client.get(path).status_code == 200, path
    assert "間違えた問題を復習（0 問）" in client.get("/quiz/exam").text  # the only miss is gone
    assert progress(client)["due"] == 6
    # The sitting goes on with the questions still in the bank, numbered without the gap.
    run = client.get(f"/quiz/exam/run/{'r' * 24}")
    assert run.status_code == 200 and "第 1 問／全 2 問" in run.text
    assert f'name="question" value="{kept[0]}"' in run.text
    q = C.questions[kept[0]]
    fb = client.post(
        f"/quiz/exam/run/{'r' * 24}/answer",
        data={"position": "0", "question": kept[0], "choice": str(q.answer)},
    )
    assert fb.status_code == 200 and str(escape(q.explanations["ja"][q.answer])) in fb.text
    with study(client).db.read() as s:
        stored = {a.position: a.question for a in s.all("SELECT * FROM exam_answer")}
    assert stored == {0: "gone-01", 1: kept[0]}  # stored under its place in the run
    assert "第 2 問／全 2 問" in client.get(f"/quiz/exam/run/{'r' * 24}").text
    # Review of misses has nothing left to review, said plainly.
    assert client.post("/quiz/exam/start", data={"mode": "review"}).status_code == 422
    # A progress file that names the removed question still imports. (The seven port cards
    # are fixed, so a file with an unknown card stays refused, as a damaged file.)
    with study(client).db.write() as s:
        s.execute("DELETE FROM card_state WHERE card = '2525'")
    exported = client.get("/me/export")
    assert "gone-01" in exported.text
    with TestClient(client.app) as other:
        r = other.post(
            "/me/import", files={"file": ("p.json", exported.content)}, follow_redirects=False
        )
        assert r.status_code == 303
        assert other.get("/quiz/stats").status_code == 200

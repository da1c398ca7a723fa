"""Who may see and empty the lab mailboxes: open on loopback, the teacher's in public mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served import Served, inbox_files, send_one

from app.config import Settings
from app.web.teacher import COOKIE, TeacherGate, TryLimiter

PASSWORD = "correct horse battery staple"


def serve(tmp: Path, **settings: object) -> Iterator[Served]:
    s = Served(tmp, **settings).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def open_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("open"), lab=True)


@pytest.fixture(scope="module")
def locked_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(
        tmp_path_factory.mktemp("locked"), lab=True, public=True, teacher_password=PASSWORD
    )


@pytest.fixture(scope="module")
def off_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("off"), lab=True, public=True)


def test_a_unicode_digit_uid_is_a_clean_404(open_lab: Served) -> None:
    send_one(open_lab)
    base = f"{open_lab.url}/lab/mailbox/bob@b.example/INBOX"
    assert httpx.get(f"{base}/1").status_code == 200
    for uid in ("%C2%B2", "%D9%A1", "1%C2%B2", "-1", "x"):  # ², Arabic-Indic one
        r = httpx.get(f"{base}/{uid}")
        assert r.status_code == 404, uid
        assert "There is no such page" in httpx.get(f"{base}/{uid}?lang=en").text


def test_on_loopback_the_viewer_and_reset_stay_open(open_lab: Served) -> None:
    send_one(open_lab)
    assert httpx.get(f"{open_lab.url}/lab/mailbox/bob@b.example/INBOX").status_code == 200
    assert "/teacher/login" not in httpx.get(f"{open_lab.url}/lab").text
    r = httpx.post(f"{open_lab.url}/lab/reset", headers={"Origin": open_lab.url})
    assert r.status_code == 303 and not inbox_files(open_lab)


def test_public_without_a_password_the_viewer_and_reset_are_off(off_lab: Served) -> None:
    send_one(off_lab)
    for r in (
        httpx.get(f"{off_lab.url}/lab/mailbox/bob@b.example/INBOX"),
        httpx.get(f"{off_lab.url}/lab/mailbox/bob@b.example/INBOX/1"),
        httpx.post(f"{off_lab.url}/lab/reset", headers={"Origin": off_lab.url}),
        httpx.post(f"{off_lab.url}/lab/reset"),
    ):
        assert r.status_code == 403, r.request.url
        assert "MAILFLOW_TEACHER_PASSWORD" in r.text
        assert "教員パスワードが設定されていない" in r.text
    assert inbox_files(off_lab), "nothing may be emptied"
    page = httpx.get(f"{off_lab.url}/lab?lang=en").text
    assert 'action="/lab/reset"' not in page and "/teacher/login" in page
    assert httpx.post(f"{off_lab.url}/teacher/login", data={"password": ""}).status_code == 403


def test_public_with_a_password_the_teacher_logs_in(locked_lab: Served) -> None:
    send_one(locked_lab, "for the teacher")
    mailbox = f"{locked_lab.url}/lab/mailbox/bob@b.example/INBOX"
    with httpx.Client(base_url=locked_lab.url) as c:
        r = c.get(mailbox)
        assert r.status_code == 303
        assert (
            r.headers["location"]
            == "/teacher/login?next=%2Flab%2Fmailbox%2Fbob%40b.example%2FINBOX"
        )
        r = c.post("/lab/reset")
        assert r.status_code == 403 and 'name="password"' in r.text
        assert inbox_files(locked_lab)
        r = c.post("/teacher/login", data={"password": "wrong", "next": "/lab"})
        assert r.status_code == 403 and "パスワードが違います" in r.text
        assert COOKIE not in c.cookies
        # A forged or foreign cookie counts for nothing.
        c.cookies.set(COOKIE, "eyJ0IjoiMTIzIn0.forged.sig")
        assert c.get(mailbox).status_code == 303
        r = c.post(
            "/teacher/login",
            data={"password": PASSWORD, "next": "/lab/mailbox/bob@b.example/INBOX"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/lab/mailbox/bob@b.example/INBOX"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
        page = c.get(mailbox)
        assert page.status_code == 200 and "for the teacher" in page.text
        assert 'action="/lab/reset"' in c.get("/lab").text
        r = c.post("/lab/reset")
        assert r.status_code == 303 and not inbox_files(locked_lab)
        # Logging out ends it.
        assert c.post("/teacher/logout").status_code == 303
        assert c.get(mailbox).status_code == 303


def test_login_never_redirects_off_site(locked_lab: Served) -> None:
    for target in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):
        r = httpx.post(
            f"{locked_lab.url}/teacher/login", data={"password": PASSWORD, "next": target}
        )
        assert r.status_code == 303 and r.headers["location"] == "/lab", target


def test_wrong_passwords_are_rate_limited_per_client(tmp_path: Path) -> None:
    for s in serve(tmp_path, public=True, teacher_password=PASSWORD):
        url = f"{s.url}/teacher/login"
        for _ in range(5):
            assert httpx.post(url, data={"password": "guess"}).status_code == 403
        # Now even the right password waits, or guessing would simply go on.
        r = httpx.post(url, data={"password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "分後にもう一度" in r.text
        assert COOKIE not in r.cookies


def test_try_limiter_window_slides_and_stays_bounded() -> None:
    now = [1000.0]
    limiter = TryLimiter(max_tries=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.wait_seconds("a") == 0
        limiter.failed("a")
    assert limiter.wait_seconds("a") == 60
    assert limiter.wait_seconds("b") == 0  # per client
    now[0] += 30
    assert limiter.wait_seconds("a") == 30
    now[0] += 30
    assert limiter.wait_seconds("a") == 0
    limiter.failed("a")
    limiter.succeeded("a")
    assert "a" not in limiter._fails


def test_a_changed_password_voids_earlier_cookies() -> None:
    key = "k" * 40
    old = TeacherGate(Settings(public=True, teacher_password="one"), key)
    new = TeacherGate(Settings(public=True, teacher_password="two"), key)
    token = old.cookie_value()
    assert old.serializer.loads(token)["t"] != new._tag
    assert new.password_ok("two") and not new.password_ok("one") and not new.password_ok("")
    assert not TeacherGate(Settings(public=True), key).password_ok("")

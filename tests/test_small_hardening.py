"""Small holes: off-site language links, look-alike loopback hosts, readable secret files."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest

from app.config import ConfigError, Settings
from app.lab.accounts_file import load_accounts
from app.study.db import Database
from app.study.schema import migrate


@pytest.mark.parametrize(
    "path",
    ["//evil.example/x", "///evil.example/x", "/%5Cevil.example/x", "/%09/evil.example/x"],
)
def test_language_links_stay_on_this_site(live_url: str, path: str) -> None:
    # A raw request line, as a link to "http://this-site//evil.example/x" would send it.
    with httpx.Client() as c:
        r = c.send(c.build_request("GET", live_url, extensions={"target": path.encode()}))
    assert r.status_code == 404
    links = re.findall(r'<a href="([^"]*)"[^>]*hreflang="(?:ja|en)"', r.text)
    assert len(links) == 2, r.text[:2000]
    for href in links:
        # A browser reads "//host", "/\\host" and "/<tab>/host" all as another site.
        assert href.startswith("/") and href[1] not in "/\\", href
        assert not re.match(r"/[\t\n\r]*[/\\]", href), href
        assert "lang=" in href


@pytest.mark.parametrize("host", ["127.0.0.1.example", "127.evil.example", "localhost.example"])
def test_names_that_only_look_like_loopback_need_public_mode(host: str) -> None:
    settings = Settings(host=host)
    assert not settings.is_loopback
    with pytest.raises(ConfigError, match="MAILFLOW_PUBLIC=1"):
        settings.check()
    Settings(host=host, public=True).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_real_loopback_addresses_still_count(host: str) -> None:
    assert Settings(host=host).is_loopback
    Settings(host=host).check()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_is_created_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which made 0644 files before
    try:
        db = tmp_path / "mailflow.db"
        database = Database(f"sqlite:///{db}")
        migrate(database)
        with database.write() as tx:
            tx.execute("SELECT 1")
            assert mode(db) == 0o600
            for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
                if extra.exists():
                    assert mode(extra) == 0o600, extra
        database.close()
    finally:
        os.umask(old)


def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "mailflow.db"
    sqlite3.connect(db).close()
    for p in (db, Path(f"{db}-wal")):
        p.touch()
        p.chmod(0o644)
    Database(f"sqlite:///{db}").close()
    assert mode(db) == 0o600 and mode(Path(f"{db}-wal")) == 0o600


def test_the_accounts_file_is_created_owner_only_and_tightened(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "lab" / "accounts.toml"
        accounts = load_accounts(path)
        assert accounts.exists("alice@a.example")
        assert mode(path) == 0o600
        path.chmod(0o644)
        load_accounts(path)
        assert mode(path) == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/flow/basic-pop3?step=2", "/flow/basic-pop3?step=2&amp;lang=en"),
        ("/%C3%BC%20x", "/%C3%BC%20x?lang=en"),
    ],
)
def test_language_links_still_point_at_the_same_page(
    live_url: str, target: str, expected: str
) -> None:
    with httpx.Client() as c:
        r = c.send(c.build_request("GET", live_url, extensions={"target": target.encode()}))
    assert f'<a href="{expected}"' in r.text


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_no_api_schema_or_docs_are_served(live_url: str, path: str) -> None:
    # Building the schema would cost the web's loop and memory on the first request,
    # for a product with no public API.
    assert httpx.get(f"{live_url}{path}").status_code == 404


# "²".isdigit() is True but int("²") raises: every number typed from outside must be
# refused as a typo, never turned into a 500.
SUPERSCRIPT_TWO = "\u00b2"


def test_unicode_digits_in_a_step_are_a_clear_400(live_url: str) -> None:
    r = httpx.get(f"{live_url}/flow/basic-pop3", params={"step": SUPERSCRIPT_TWO})
    assert r.status_code == 400


def test_unicode_digits_in_study_forms_are_refused_cleanly(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    with TestClient(create_app(Settings(data_dir=tmp_path, lab=False))) as c:
        r = c.post("/quiz/exam/start", data={"mode": "mini"}, follow_redirects=False)
        run_url = r.headers["location"]
        page = c.get(run_url).text
        qid = re.search(r'name="question" value="([^"]+)"', page).group(1)
        r = c.post(
            f"{run_url}/answer",
            data={"position": SUPERSCRIPT_TWO, "question": qid, "choice": "0"},
        )
        assert 400 <= r.status_code < 500, r.status_code
        page = c.get("/quiz/ports").text
        token = re.search(r'name="token" value="([^"]+)"', page).group(1)
        r = c.post("/quiz/ports/answer", data={"token": token, "answer": SUPERSCRIPT_TWO})
        assert r.status_code < 500, r.status_code

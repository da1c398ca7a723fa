"""Same origin and security headers over real HTTP and websockets (app/web/security.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from served import Served
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

PUBLIC_URL = "https://mail.school.example"
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
FOREIGN = "http://evil.example"


def boom() -> None:
    raise RuntimeError("a bug on our side")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("sec"), public_url=PUBLIC_URL)
    s.app.add_api_route("/boom", boom)  # an unhandled error, to see the 500's headers
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, follow_redirects=False) as c:
        yield c


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def all_routes(routes: list[Any], prefix: str = "") -> Iterator[Any]:
    """Every route, also those inside included routers (FastAPI keeps those nested)."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from all_routes(inner.routes, prefix + r.include_context.prefix)
        else:
            yield prefix, r


def route_paths(served: Served, kind: type, methods: set[str] | None = None) -> set[str]:
    return {
        _concrete(prefix + r.path)
        for prefix, r in all_routes(served.app.routes)
        if isinstance(r, kind) and (methods is None or r.methods & methods)
    }


def unsafe_routes(served: Served) -> list[str]:
    return sorted(route_paths(served, APIRoute, {"POST", "PUT", "PATCH", "DELETE"}))


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)


def test_every_kind_of_response_carries_the_security_headers(
    served: Served, client: httpx.Client
) -> None:
    paths = route_paths(served, APIRoute, {"GET"}) - {"/boom"}
    assert {"/", "/flow/x", "/quiz", "/me", "/lab", "/teacher/login"} <= paths
    paths |= {
        "/flow/basic-pop3?mode=predict",
        "/static/css/app.css",
        "/static/js/flow.js",
        "/static/favicon.svg",
        "/no-such-page",  # 404 page
        "/api/no-such-thing",  # 404 as JSON
        "/flow/basic-pop3?step=abc",  # 400
    }
    statuses = set()
    for path in sorted(paths):
        r = client.get(path)
        statuses.add(r.status_code)
        assert_security_headers(r)
    assert {200, 400, 404} <= statuses
    # An unhandled error leaves through Starlette's outermost error handler: headers too.
    # Its own connection: uvicorn closes the connection after an unhandled error.
    r = httpx.get(f"{served.url}/boom", headers={"Connection": "close"})
    assert r.status_code == 500
    assert_security_headers(r)
    # Other methods and the refusal itself.
    assert_security_headers(client.head("/"))
    assert_security_headers(client.post("/quiz/exam/start", headers={"Origin": FOREIGN}))


def test_every_state_changing_route_refuses_a_foreign_origin(
    served: Served, client: httpx.Client
) -> None:
    routes = unsafe_routes(served)
    assert {"/me/import", "/quiz/ports/answer", "/quiz/exam/start", "/quiz/speed/start"} <= set(
        routes
    )
    for path in routes:
        r = client.post(path, headers={"Origin": FOREIGN}, data={"mode": "mini"})
        assert r.status_code == 403, path
        assert "set-cookie" not in r.headers, path  # the learner's cookie stays as it was
        assert "MailFlow Lab 自身のページからのみ" in r.text, path


def test_foreign_import_changes_nothing(client: httpx.Client) -> None:
    # A learner with progress, and the export of another, fresh learner.
    client.post("/quiz/exam/start", data={"mode": "mini"})
    mine = client.cookies["mf_learner"]
    other = httpx.get(f"{client.base_url}/me/export").content
    files = {"file": ("p.json", other, "application/json")}
    r = client.post("/me/import", files=files, headers={"Origin": FOREIGN})
    assert r.status_code == 403
    assert client.cookies["mf_learner"] == mine


def test_referer_counts_when_there_is_no_origin(client: httpx.Client, served: Served) -> None:
    r = client.post("/quiz/exam/start", headers={"Referer": f"{FOREIGN}/page.html"})
    assert r.status_code == 403
    r = client.post(
        "/quiz/exam/start",
        headers={"Referer": f"{served.url}/quiz/exam"},
        data={"mode": "mini"},
    )
    assert r.status_code == 303
    # With both, Origin decides: a same-origin Referer cannot launder a foreign Origin.
    r = client.post(
        "/quiz/exam/start", headers={"Origin": FOREIGN, "Referer": f"{served.url}/quiz/exam"}
    )
    assert r.status_code == 403


def test_requests_without_origin_or_referer_pass(client: httpx.Client) -> None:
    # Scripts, curl and the like send neither; they could forge anything anyway.
    r = client.post("/quiz/exam/start", data={"mode": "mini"})
    assert r.status_code == 303 and r.headers["location"].startswith("/quiz/exam/run/")


def test_own_origin_and_the_public_url_pass(client: httpx.Client, served: Served) -> None:
    for origin in (served.url, PUBLIC_URL, PUBLIC_URL + ":443", served.url.upper()):
        r = client.post("/quiz/exam/start", headers={"Origin": origin}, data={"mode": "mini"})
        assert r.status_code == 303, origin


@pytest.mark.parametrize(
    "origin",
    [
        "null",  # sandboxed frames, file: pages
        "http://127.0.0.1",  # same host, another port
        "http://mail.school.example",  # the public host, but not its scheme
        "https://127.0.0.1.evil.example",
        "not a url",
    ],
)
def test_near_misses_are_foreign(client: httpx.Client, origin: str) -> None:
    r = client.post("/quiz/exam/start", headers={"Origin": origin})
    assert r.status_code == 403


def test_the_refusal_speaks_the_learners_language_and_json_to_the_api(
    client: httpx.Client,
) -> None:
    r = client.post("/quiz/exam/start?lang=en", headers={"Origin": FOREIGN})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert "accepted only from MailFlow Lab's own page" in r.text
    r = client.post("/quiz/exam/start", headers={"Origin": FOREIGN, "Accept": "application/json"})
    body = r.json()
    assert r.status_code == 403 and body["error"] == "origin" and body["message"]


def test_safe_methods_pass_whatever_the_origin(client: httpx.Client) -> None:
    assert client.get("/quiz", headers={"Origin": FOREIGN}).status_code == 200


def _ws_url(served: Served, path: str) -> str:
    return served.url.replace("http://", "ws://") + path


def test_every_websocket_refuses_a_foreign_origin(served: Served) -> None:
    sockets = route_paths(served, APIWebSocketRoute)
    assert {"/ws/flow", "/ws/lab"} <= sockets
    for path in sorted(sockets):
        for headers in ({"Origin": FOREIGN}, {"Origin": "null"}):
            with pytest.raises(InvalidStatus) as caught:
                connect(_ws_url(served, path), additional_headers=headers, open_timeout=10)
            assert caught.value.response.status_code == 403, path
        with pytest.raises(InvalidStatus):
            connect(
                _ws_url(served, path),
                additional_headers={"Referer": f"{FOREIGN}/x"},
                open_timeout=10,
            )


def test_websockets_from_this_site_or_a_script_open(served: Served) -> None:
    for headers in ({"Origin": served.url}, {"Origin": PUBLIC_URL}, {}):
        with connect(_ws_url(served, "/ws/lab"), additional_headers=headers, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["code"] == "lab_off"


def test_the_public_url_setting_is_checked(tmp_path: Path) -> None:
    from app.config import ConfigError, Settings

    assert Settings(public_url="https://Mail.School.Example/").public_origin == (
        "https://mail.school.example:443"
    )
    for bad in ("mail.school.example", "ftp://x.example", "https://x.example/mailflow"):
        with pytest.raises(ConfigError, match="MAILFLOW_PUBLIC_URL"):
            Settings(public_url=bad).check()

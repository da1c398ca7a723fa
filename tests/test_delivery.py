"""Web delivery over real TCP: gzip for text, content-hashed static URLs cached for a year,
HTML always revalidated."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"')
HASHED = re.compile(r"^/static/(?P<stem>.+)\.(?P<digest>[0-9a-f]{8})(?P<suffix>\.\w+)$")
IMPORT = re.compile(rb"""from\s*["']\./([\w.-]+\.js)["']""")
HASHED_IMPORT = re.compile(rb"""(from\s*["']\./[\w-]+)\.[0-9a-f]{8}(\.js)(["'])""")


def raw_get(url: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """GET without httpx decoding the body, so we see the bytes as they crossed the wire."""
    with httpx.Client() as client, client.stream("GET", url, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def test_html_is_gzipped_and_revalidated(live_url: str) -> None:
    r, raw = raw_get(f"{live_url}/flow/basic-pop3", **{"accept-encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["cache-control"] == "no-cache"
    html = gzip.decompress(raw).decode()
    assert "<html" in html
    plain, plain_raw = raw_get(f"{live_url}/flow/basic-pop3", **{"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain_raw.decode().count("<html") == 1


def test_every_asset_of_a_page_has_a_hashed_url_served_immutable(live_url: str) -> None:
    # Modules the page's scripts import count too: a plain-named import would be revalidated
    # on every visit, one request after another.
    page = httpx.get(f"{live_url}/flow/basic-pop3").text
    urls = ASSET.findall(page)
    assert any(u.startswith("/static/js/flow.") for u in urls)
    seen: set[str] = set()
    while urls:
        url = urls.pop()
        if url in seen:
            continue
        seen.add(url)
        m = HASHED.match(url)
        assert m, url
        r, raw = raw_get(live_url + url, **{"accept-encoding": "gzip"})
        assert r.status_code == 200, url
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        source = (ROOT / "static" / (m["stem"] + m["suffix"])).read_bytes()
        body = raw
        if r.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        folder = url.rsplit("/", 1)[0]
        imports = [f"{folder}/{name.decode()}" for name in IMPORT.findall(body)]
        urls += imports
        # The served module is its source with each sibling import named by its hash.
        assert HASHED_IMPORT.sub(rb"\1\2\3", body) == source, url
    stems = {HASHED.match(u)["stem"] for u in seen}  # type: ignore[index]
    assert {"js/flow", "js/stage", "js/flow_stepper"} <= stems


def test_htmx_goes_compressed(live_url: str) -> None:
    page = httpx.get(f"{live_url}/quiz/ports").text
    (url,) = [u for u in ASSET.findall(page) if "/htmx" in u]
    r, raw = raw_get(live_url + url, **{"accept-encoding": "gzip, deflate, br"})
    source = (ROOT / "static/vendor/htmx-2.0.11/htmx.min.js").read_bytes()
    assert len(source) > 50_000
    assert r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) == len(raw) < 20_000
    assert gzip.decompress(raw) == source


def test_the_plain_static_name_still_works_and_revalidates(live_url: str) -> None:
    # A module importing another by relative path, or a page cached before a deploy.
    r = httpx.get(f"{live_url}/static/js/flow.js")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-cache"
    assert r.content == (ROOT / "static/js/flow.js").read_bytes()
    again = httpx.get(f"{live_url}/static/js/flow.js", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert httpx.get(f"{live_url}/static/js/nope.js").status_code == 404


PAGES = ["/", "/flow", "/flow/basic-pop3", "/flow/basic-pop3?mode=predict", "/quiz",
         "/quiz/ports", "/quiz/speed", "/quiz/exam", "/me", "/lab", "/classroom", "/join"]


def test_htmx_is_loaded_exactly_where_a_page_has_hx_attributes(live_url: str) -> None:
    # A flow page (the one a whole class opens at once) must not pay for 16 KB of htmx it
    # never uses; a page with hx- attributes must have it, or its forms lose their swaps.
    loaders = set()
    with httpx.Client(base_url=live_url) as client:
        for path in PAGES:
            html = client.get(path).text
            uses = " hx-" in html
            loads = any("/htmx" in u for u in ASSET.findall(html))
            assert uses == loads, path
            if loads:
                loaders.add(path)
    assert "/flow/basic-pop3" not in loaders
    assert {"/quiz/ports", "/flow/basic-pop3?mode=predict"} <= loaders

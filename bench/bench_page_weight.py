"""Page weight: bytes on the wire for a first and a repeat visit to the flow page, in Chromium.

Starts the real app (uvicorn, lab off) on a loopback port and opens the page in Debian's
Chromium through Playwright. Chromium's own network log (DevTools protocol) gives, per HTTP
response, the bytes that crossed the wire (`encodedDataLength`: headers + gzipped body) and
the decoded body size. The websocket the page then opens is not counted (it is the lesson's
content, the same on every visit).

- first visit: a fresh browser profile (empty cache) loads the page and every asset it asks for;
- repeat visit: the same profile navigates to the page again, as a learner coming back: the
  HTML is fetched again (it is `no-cache`), the hashed assets come from the cache
  (`immutable`) without a request.

    .venv/bin/python bench/bench_page_weight.py [--path /flow/basic-pop3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, start_process, wait_for_port

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]


@dataclass
class Visit:
    wire: dict[str, int] = field(default_factory=dict)  # url -> bytes on the wire
    decoded: dict[str, int] = field(default_factory=dict)  # url -> decoded body bytes
    cached: list[str] = field(default_factory=list)  # served from the browser's cache

    def add(self, url: str, wire: int, decoded: int, from_cache: bool) -> None:
        if from_cache:
            self.cached.append(url)
            return
        self.wire[url] = self.wire.get(url, 0) + wire
        self.decoded[url] = self.decoded.get(url, 0) + decoded


def visit(page: Page, url: str) -> Visit:
    """Load `url` and wait until the network is idle; record what Chromium fetched."""
    result = Visit()
    cdp = page.context.new_cdp_session(page)
    urls: dict[str, str] = {}
    cache: set[str] = set()
    decoded: dict[str, int] = {}

    def on_response(e: dict[str, Any]) -> None:
        urls[e["requestId"]] = e["response"]["url"]
        if e["response"].get("fromDiskCache") or e["response"].get("fromPrefetchCache"):
            cache.add(e["requestId"])

    def on_data(e: dict[str, Any]) -> None:
        decoded[e["requestId"]] = decoded.get(e["requestId"], 0) + e["dataLength"]

    def on_finished(e: dict[str, Any]) -> None:
        rid = e["requestId"]
        if rid in urls:
            result.add(urls[rid], int(e["encodedDataLength"]), decoded.get(rid, 0), rid in cache)

    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.dataReceived", on_data)
    cdp.on("Network.loadingFinished", on_finished)
    cdp.on("Network.requestServedFromCache", lambda e: cache.add(e["requestId"]))
    cdp.send("Network.enable")
    page.goto(url, wait_until="networkidle")
    cdp.detach()
    return result


def short(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def report(name: str, v: Visit) -> None:
    print(f"{name}: {sum(v.wire.values()):,} bytes on the wire "
          f"({sum(v.decoded.values()):,} decoded), {len(v.wire)} responses")  # fmt: skip
    for url, n in v.wire.items():
        print(f"  {n:>7,}  ({v.decoded[url]:>7,} decoded)  {short(url)}")
    for url in v.cached:
        print(f"        0  from cache          {short(url)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="/flow/basic-pop3")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = start_process(
            ["-m", "uvicorn", "app.web.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            env={"MAILFLOW_DATA_DIR": data, "MAILFLOW_LAB": "0"},
        )  # fmt: skip
        try:
            wait_for_port(port)
            url = f"http://127.0.0.1:{port}{args.path}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_context().new_page()
                first = visit(page, url)
                page.goto("about:blank")
                repeat = visit(page, url)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    report("first visit", first)
    report("repeat visit", repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())

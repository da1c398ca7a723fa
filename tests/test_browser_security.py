"""A hostile page on another origin, in Debian's Chromium, beside a learner's session.

The app runs on 127.0.0.1:P; the attacker's pages come from a tiny server on
127.0.0.1:Q, a different origin of the same site (so even SameSite=Strict cookies go
along): only the same-origin rule and the headers stand in the way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from chromium import HTMX_LOADED
from playwright.sync_api import Browser, BrowserContext, Page, expect
from served import Served, inbox_files, send_one

pytestmark = pytest.mark.browser


class Foreign:
    """The attacker's web server: serves whatever pages a test puts in `pages`."""

    def __init__(self) -> None:
        pages: dict[str, str] = {}
        self.pages = pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "not here").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("site"), lab=True).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def foreign() -> Iterator[Foreign]:
    f = Foreign()
    yield f
    f.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def learner_cookie(context: BrowserContext, site: Served) -> str | None:
    for c in context.cookies(site.url):
        if c["name"] == "mf_learner":
            return c["value"]
    return None


def test_a_foreign_page_gets_no_websocket(
    context: BrowserContext, site: Served, foreign: Foreign
) -> None:
    ws = site.url.replace("http://", "ws://")
    foreign.pages["/ws.html"] = f"""<!doctype html><script>
    function probe(url, hello) {{
      return new Promise((resolve) => {{
        const seen = {{opened: false, messages: 0, code: null}};
        const socket = new WebSocket(url);
        socket.onopen = () => {{ seen.opened = true; socket.send(hello); }};
        socket.onmessage = () => {{ seen.messages += 1; resolve(seen); }};
        socket.onclose = (e) => {{ seen.code = e.code; resolve(seen); }};
      }});
    }}
    window.results = Promise.all([
      probe("{ws}/ws/lab", JSON.stringify({{type: "hello", lang: "en"}})),
      probe("{ws}/ws/flow", JSON.stringify({{type: "hello"}})),
    ]);
    </script>"""
    page = context.new_page()
    page.goto(site.url + "/lab")  # the learner's own tab, with the live view open
    page.goto(foreign.url + "/ws.html")
    lab, flow = page.evaluate("window.results")
    for seen in (lab, flow):
        assert seen == {"opened": False, "messages": 0, "code": 1006}, seen


def _auto_post(action: str, fields: str = "", file_json: str | None = None) -> str:
    attach = ""
    if file_json is not None:
        # A file input can be filled from script (DataTransfer), so an import can be forged.
        attach = f"""
        const dt = new DataTransfer();
        dt.items.add(new File([{json.dumps(file_json)}], "p.json", {{type: "application/json"}}));
        document.getElementById("f").files = dt.files;"""
    return f"""<!doctype html>
    <form id="x" method="post" action="{action}" enctype="multipart/form-data">
      {fields}<input type="file" id="f" name="file">
    </form>
    <script>{attach}
    document.getElementById("x").submit();
    </script>"""


def test_a_foreign_auto_posted_import_is_refused_and_changes_nothing(
    context: BrowserContext, site: Served, foreign: Foreign
) -> None:
    # The learner has progress here; the attacker holds another learner's export.
    page = context.new_page()
    page.goto(site.url + "/quiz/exam?lang=en")
    page.get_by_role("button", name="Mini exam: 10 random questions").click()
    expect(page.locator(".exam-progress")).to_contain_text("Question 1 of 10")
    mine = learner_cookie(context, site)
    assert mine
    with httpx.Client(base_url=site.url) as other:
        other.post("/quiz/exam/start", data={"mode": "mini"})
        export = other.get("/me/export").text
    foreign.pages["/import.html"] = _auto_post(f"{site.url}/me/import", file_json=export)
    with page.expect_response(lambda r: r.url.startswith(site.url + "/me/import")) as answer:
        page.goto(foreign.url + "/import.html")
    assert answer.value.status == 403
    page.wait_for_url(site.url + "/me/import")
    # In English: the learner chose it on this site (the lang cookie went along).
    expect(page.locator("main")).to_contain_text("accepted only from MailFlow Lab's own page")
    assert learner_cookie(context, site) == mine


def test_a_foreign_auto_posted_lab_reset_is_refused(
    context: BrowserContext, site: Served, foreign: Foreign
) -> None:
    send_one(site, "keep me")
    foreign.pages["/reset.html"] = _auto_post(f"{site.url}/lab/reset")
    page = context.new_page()
    with page.expect_response(lambda r: r.url.startswith(site.url + "/lab/reset")) as answer:
        page.goto(foreign.url + "/reset.html")
    assert answer.value.status == 403
    assert inbox_files(site), "the mailboxes must not be emptied"


def test_the_lab_does_not_load_in_a_foreign_frame(
    context: BrowserContext, site: Served, foreign: Foreign
) -> None:
    send_one(site, "still here")
    foreign.pages["/frame.html"] = f"""<!doctype html>
    <p>Win a prize! Click the red button.</p>
    <iframe id="victim" src="{site.url}/lab" width="800" height="600"></iframe>
    <script>
    window.framed = new Promise((resolve) =>
      document.getElementById("victim").addEventListener("load", () => resolve(true)));
    </script>"""
    page = context.new_page()
    refusals: list[str] = []
    page.on("console", lambda m: refusals.append(m.text) if "frame-ancestors" in m.text else None)
    with page.expect_response(lambda r: r.url == f"{site.url}/lab") as framed:
        page.goto(foreign.url + "/frame.html")
    assert "frame-ancestors 'none'" in framed.value.headers["content-security-policy"]
    assert page.evaluate("window.framed")
    frame = page.frame_locator("#victim")
    expect(frame.locator("form[action='/lab/reset']")).to_have_count(0)
    assert refusals, "Chromium names frame-ancestors when it refuses the frame"
    assert inbox_files(site)


PAGES = [
    "/",
    "/flow",
    "/quiz",
    "/quiz/exam",
    "/quiz/speed",
    "/me",
    "/quiz/stats",
    "/flow/basic-pop3/handout",
]
CSP_LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def watched(context: BrowserContext) -> Iterator[tuple[Page, list[str]]]:
    """A page whose CSP violations (console and DOM events) and errors are collected."""
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page, problems
    problems += page.evaluate("window.__csp")
    assert not problems, problems


def _check_csp(page: Page, path: str, site: Served) -> None:
    response = page.goto(site.url + path)
    assert response is not None and response.status == 200, path
    assert "script-src 'self'" in response.headers["content-security-policy"], path


def test_every_page_works_under_the_csp(watched: tuple[Page, list[str]], site: Served) -> None:
    page, problems = watched
    for path in PAGES:
        _check_csp(page, path, site)
        problems += page.evaluate("window.__csp")
    # The flow page: websocket, envelope animation, transcript rendering.
    _check_csp(page, "/flow/basic-pop3?lang=en", site)
    for n in range(1, 6):
        page.keyboard.press("ArrowRight")
        expect(page.locator("#log > li")).to_have_count(n)
    problems += page.evaluate("window.__csp")
    # Predict mode: htmx posts a guess and swaps the answer in.
    _check_csp(page, "/flow/basic-pop3?mode=predict&lang=en", site)
    expect(page.locator("#log > li")).to_have_count(1)
    page.keyboard.press("1")
    before = page.locator("input[name=point]").get_attribute("value")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(b) => { const f = document.querySelector('input[name=point]');"
        " return !f || f.value !== b; }",
        arg=before,
    )
    problems += page.evaluate("window.__csp")
    # The port quiz: an htmx answer and its feedback.
    _check_csp(page, "/quiz/ports?lang=en", site)
    slot = page.locator("#quiz-slot")
    expect(slot.locator(".prompt")).to_be_visible()
    slot.locator("button[type=submit], input[type=submit]").first.click()
    expect(slot.locator(".feedback, .form-error")).to_have_count(1)
    problems += page.evaluate("window.__csp")
    # The lab's live view: the websocket connects and replays what happened.
    send_one(site, "live")
    _check_csp(page, "/lab?lang=en", site)
    expect(page.locator("#log > li").first).to_be_visible()
    # The mailbox viewer and one message.
    _check_csp(page, "/lab/mailbox/bob@b.example/INBOX?lang=en", site)
    _check_csp(page, "/lab/mailbox/bob@b.example/INBOX/1?lang=en", site)


def test_htmx_injects_no_inline_style(watched: tuple[Page, list[str]], site: Served) -> None:
    page, _ = watched
    _check_csp(page, "/quiz/ports", site)
    page.wait_for_function(HTMX_LOADED)
    assert page.evaluate("document.querySelectorAll('style').length") == 0
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False

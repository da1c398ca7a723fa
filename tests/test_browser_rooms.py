"""Classroom rooms in Debian's Chromium: a teacher and three students (separate browser
contexts, phones at 360 px) run a poll end to end, one phone dropping off and coming back
in the middle; the room pages in ja and en, from the keyboard, checked with axe-core."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    WebSocketRoute,
    expect,
)
from redis_server import RedisServer
from served import Served
from workers import Workers

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module", params=["one-process", "two-workers-redis"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[str]:
    if request.param == "one-process":
        s = Served(tmp_path_factory.mktemp("rooms-browser")).start()
        yield s.url
        s.stop()
        return
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    workers = Workers(tmp_path_factory.mktemp("rooms-workers"), redis.url, count=2)
    yield workers.url
    workers.stop()
    redis.stop()


def axe_check(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    page.evaluate(AXE.read_text())  # through DevTools, so the page's CSP stays as it is
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, json.dumps(bad, ensure_ascii=False, indent=1)


def _context(browser: Browser, errors: list[str], **kw: object) -> tuple[BrowserContext, Page]:
    context = browser.new_context(**kw)  # type: ignore[arg-type]
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    # A Content-Security-Policy violation is a console error, not a page error.
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text
            else None)
    return context, page


def _current(page: Page) -> str | None:
    return page.locator("#log > li[aria-current=step]").get_attribute("data-step")


def test_teacher_and_three_students_run_a_poll(browser: Browser, site: str) -> None:
    errors: list[str] = []
    tctx, teacher = _context(browser, errors, viewport={"width": 1280, "height": 900})
    teacher.on("dialog", lambda d: d.accept())
    teacher.goto(f"{site}/classroom?lang=ja")
    axe_check(teacher)
    teacher.get_by_label("シナリオ").select_option("basic-pop3")
    teacher.get_by_role("button", name="ルームを作成").click()
    code_el = teacher.locator("[data-room-code]").first
    expect(code_el).to_be_visible()
    code = code_el.get_attribute("data-room-code")
    assert code and re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", code)
    expect(teacher.locator("img.room-qr")).to_be_visible()

    students: list[tuple[BrowserContext, Page]] = []
    for n in range(3):
        ctx, page = _context(browser, errors, **PHONE)
        if n == 0:  # one types the code at /join, the others open the QR code's address
            page.goto(f"{site}/join?lang=ja")
            page.get_by_label("ルームコード（6文字）").fill(code.lower())
            page.keyboard.press("Enter")
        else:
            page.goto(f"{site}/r/{code}?lang=ja")
        if n == 1:
            page.get_by_label("ニックネーム（省略可）").fill("ゆき")
        page.get_by_role("button", name="参加").click()
        expect(page.locator("#room[data-role=student]")).to_be_visible()
        students.append((ctx, page))
    expect(teacher.locator("#joined")).to_have_text("3")
    expect(students[1][1].locator(".nick")).to_have_text("ゆき")

    # The teacher drives with the clicker's keys and the 次へ button.
    next_button = teacher.get_by_role("button", name=re.compile("^次へ"))
    teacher.keyboard.press("ArrowRight")
    teacher.keyboard.press("PageDown")
    next_button.click()
    for _, page in students:
        expect(page.locator("#log > li[aria-current=step]")).to_have_attribute("data-step", "3")

    # A phone drops off the network (its socket is cut, new ones fail); the class goes
    # on; when the network is back it resumes where the teacher is, without a reload.
    _sleeper_ctx, sleeper = students[2]
    line = {"down": False, "open": []}

    def network(ws: WebSocketRoute) -> None:
        if line["down"]:
            ws.close()
            return
        ws.connect_to_server()
        line["open"].append(ws)

    sleeper.route_web_socket(re.compile(r"/ws/room$"), network)
    sleeper.reload()  # from now on its room socket passes through `network`
    expect(sleeper.locator("#log > li[aria-current=step]")).to_have_attribute("data-step", "3")
    line["down"] = True
    for ws in line["open"]:
        ws.close()
    expect(sleeper.locator("#status")).to_contain_text("接続が切れました")
    teacher.keyboard.press("ArrowRight")
    teacher.keyboard.press("ArrowRight")
    expect(students[0][1].locator("#log > li")).to_have_count(5)
    expect(sleeper.locator("#log > li")).to_have_count(3)
    line["down"] = False
    sleeper.evaluate("window.dispatchEvent(new Event('online'))")
    expect(sleeper.locator("#log > li[aria-current=step]")).to_have_attribute(
        "data-step", "5", timeout=20_000
    )
    expect(sleeper.locator("#log > li")).to_have_count(5)
    expect(sleeper.locator("#status")).to_have_text("接続しました。")

    # Students look back, never ahead of the teacher.
    first = students[0][1]
    first.get_by_role("button", name="前の行").click()
    expect(first.locator("#log > li[aria-current=step]")).to_have_attribute("data-step", "4")
    first.get_by_role("button", name="前の行").click()
    expect(first.locator("#log > li[aria-current=step]")).to_have_attribute("data-step", "3")
    first.get_by_role("button", name="次の行").click()
    first.get_by_role("button", name="次の行").click()
    expect(first.get_by_role("button", name="次の行")).to_be_disabled()

    # The teacher reloads the console and keeps control (the token is in a cookie).
    teacher.reload()
    expect(teacher.locator("#log > li")).to_have_count(5)
    teacher.keyboard.press("ArrowRight")
    for _, page in students:
        expect(page.locator("#log > li")).to_have_count(6)

    # A live question: what does the client send next?
    teacher.get_by_role("button", name="出題：クライアントが次に送る行は？").click()
    for n, (_, page) in enumerate(students):
        choices = page.locator("#poll [data-choice]")
        expect(choices.first).to_be_visible()
        choices.nth(min(n, choices.count() - 1)).click()
        expect(page.locator("#poll .poll-note")).to_contain_text("解答を受け付けました")
    expect(teacher.locator("#poll .poll-count")).to_have_text("解答数：3")
    axe_check(teacher)
    axe_check(students[0][1])
    teacher.get_by_role("button", name="正解を表示").click()
    for _, page in students:
        expect(page.locator("#poll .poll-explain")).to_be_visible()
        expect(page.locator("#poll .bars")).to_be_visible()
    axe_check(students[1][1])

    teacher.get_by_role("button", name="授業を終了").click()
    for _, page in students:
        expect(page.locator("#results table")).to_be_visible()
        expect(page.locator("#results tbody tr")).to_have_count(1)
    teacher.get_by_role("link", name="集計").click()
    expect(teacher.locator(".room-report tbody tr")).to_have_count(1)
    axe_check(teacher)
    with teacher.expect_download() as download:
        teacher.get_by_role("link", name="CSVでダウンロード").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.splitlines()[1].startswith("1,predict,")
    assert ",3," in text.splitlines()[1]
    for ctx, _ in students:
        ctx.close()
    tctx.close()
    assert not errors, errors


def test_room_pages_in_english_from_the_keyboard_at_360px(browser: Browser, site: str
                                                            ) -> None:
    errors: list[str] = []
    tctx, teacher = _context(browser, errors, viewport={"width": 360, "height": 740})
    teacher.goto(f"{site}/classroom?lang=en")
    teacher.get_by_label("Scenario").focus()
    teacher.keyboard.press("Tab")
    expect(teacher.get_by_role("button", name="Create the room")).to_be_focused()
    teacher.keyboard.press("Enter")
    code = teacher.locator("[data-room-code]").first.get_attribute("data-room-code")
    expect(teacher.get_by_role("button", name=re.compile("^Next"))).to_be_visible()
    axe_check(teacher)

    sctx, student = _context(browser, errors, **PHONE)
    student.goto(f"{site}/join?lang=en")
    axe_check(student)
    student.get_by_label("Room code (6 characters)").focus()
    student.keyboard.type(code or "")
    student.keyboard.press("Enter")
    student.get_by_label("Nickname (optional)").focus()
    student.keyboard.type("<b>Kim</b>")
    student.keyboard.press("Enter")
    expect(student.locator(".nick")).to_have_text("<b>Kim</b>")  # shown as text, escaped
    axe_check(student)
    width = student.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the student page scrolls sideways at 360 px ({width})"
    teacher.keyboard.press("ArrowRight")
    expect(student.locator("#log > li[aria-current=step]")).to_have_attribute("data-step", "1")
    sctx.close()
    tctx.close()
    assert not errors, errors


def _stage_state(page: Page) -> dict[str, object]:
    """The visible stage now: which svg, its current link(s) and where its packet rests."""
    return page.evaluate(
        """() => {
          const svg = [...document.querySelectorAll('svg[data-stage]')]
            .find((s) => s.getBoundingClientRect().width > 0);
          const packet = svg.querySelector('[data-packet]');
          return {
            kind: svg.dataset.stage,
            current: [...svg.querySelectorAll('[data-link][aria-current="true"]')]
              .map((l) => l.dataset.link),
            at: packet.style.transform,
            cls: packet.getAttribute('class'),
          };
        }"""
    )


# Counts the packet's animations (Web Animations API), so a test can tell "it travelled"
# from "it jumped" without timing anything.
COUNT_MOVES = """
window.__packetMoves = 0;
const animate = Element.prototype.animate;
Element.prototype.animate = function (...args) {
  if (this.matches('[data-packet]')) window.__packetMoves += 1;
  return animate.apply(this, args);
};
"""


def _moves(page: Page) -> list[list[object]]:
    return json.loads(page.locator("#stage-moves").text_content() or "[]")


def test_the_stage_follows_the_teacher_on_console_and_phone(browser: Browser, site: str
                                                             ) -> None:
    errors: list[str] = []
    tctx, teacher = _context(browser, errors, viewport={"width": 1920, "height": 1080})
    tctx.add_init_script(COUNT_MOVES)
    teacher.goto(f"{site}/classroom?lang=ja")
    teacher.get_by_label("シナリオ").select_option("basic-pop3")
    teacher.get_by_role("button", name="ルームを作成").click()
    code = teacher.locator("[data-room-code]").first.get_attribute("data-room-code")
    sctx, student = _context(browser, errors, **PHONE)
    sctx.add_init_script(COUNT_MOVES)
    student.goto(f"{site}/r/{code}?lang=ja")
    student.get_by_role("button", name="参加").click()
    expect(student.locator("#room[data-role=student]")).to_be_visible()
    expect(teacher.locator("svg[data-stage=full]")).to_be_visible()
    expect(student.locator("svg[data-stage=compact]")).to_be_visible()
    assert _stage_state(teacher)["kind"] == "full"
    # No poll yet: the reveal and unpoll buttons stay hidden (.button is inline-flex).
    expect(teacher.locator("[data-action=unpoll]")).to_be_hidden()
    expect(teacher.locator("[data-action=reveal]")).to_be_hidden()
    assert _stage_state(student)["kind"] == "compact"

    # Two neighbouring steps on different hops (or ways): the packet must move between them.
    moves = _moves(teacher)
    assert moves == _moves(student)  # the same room's run on both screens
    first = next(i + 1 for i in range(len(moves) - 1)
                 if moves[i][0] and moves[i + 1][0]
                 and (moves[i][0], moves[i][7]) != (moves[i + 1][0], moves[i + 1][7]))
    seen: dict[int, dict[str, dict[str, object]]] = {}
    for step in range(1, first + 2):
        teacher.keyboard.press("ArrowRight")
        for page in (teacher, student):
            expect(page.locator("#log > li[aria-current=step]")).to_have_attribute(
                "data-step", str(step))
            link = str(moves[step - 1][0])
            if link:
                expect(page.locator(f'svg[data-stage]:visible [data-link="{link}"]')
                       ).to_have_attribute("aria-current", "true")
        seen[step] = {"t": _stage_state(teacher), "s": _stage_state(student)}
        for who in ("t", "s"):
            assert seen[step][who]["current"] == ([moves[step - 1][0]] if moves[step - 1][0]
                                                  else [])
    for who in ("t", "s"):
        assert seen[first][who]["at"] != seen[first + 1][who]["at"], who

    # ← on the clicker reverses: both screens show exactly what the step before showed.
    teacher.keyboard.press("ArrowLeft")
    for page, who in ((teacher, "t"), (student, "s")):
        expect(page.locator("#log > li[aria-current=step]")).to_have_attribute(
            "data-step", str(first))
        assert _stage_state(page) == seen[first][who]

    width = student.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the student page scrolls sideways at 360 px ({width})"
    axe_check(teacher)
    axe_check(student)
    for page in (teacher, student):  # the packet travelled (no reduced motion asked)
        assert page.evaluate("window.__packetMoves") > 0
    sctx.close()
    tctx.close()
    assert not errors, errors


def test_the_phone_stage_honours_reduced_motion(browser: Browser, site: str) -> None:
    errors: list[str] = []
    tctx, teacher = _context(browser, errors, viewport={"width": 1280, "height": 900},
                             reduced_motion="reduce")
    tctx.add_init_script(COUNT_MOVES)
    teacher.goto(f"{site}/classroom?lang=en")
    teacher.get_by_role("button", name="Create the room").click()
    code = teacher.locator("[data-room-code]").first.get_attribute("data-room-code")
    sctx, student = _context(browser, errors, reduced_motion="reduce", **PHONE)
    sctx.add_init_script(COUNT_MOVES)
    student.goto(f"{site}/r/{code}?lang=en")
    student.get_by_role("button", name="Join").click()
    expect(student.locator("svg[data-stage=compact]")).to_be_visible()
    teacher.keyboard.press("ArrowRight")
    for page in (teacher, student):
        expect(page.locator("#log > li[aria-current=step]")).to_have_attribute("data-step", "1")
        expect(page.locator('svg[data-stage]:visible [data-packet]')).not_to_have_class(
            re.compile(r"\bnone\b"))
        assert page.evaluate("window.__packetMoves") == 0  # it is placed, never animated
    sctx.close()
    tctx.close()
    assert not errors, errors

"""The flow page in Debian's Chromium, driven with the keyboard only, as a learner
or a presenter's clicker would drive it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors


def log_items(page: Page):
    return page.locator("#log > li")


def total_of(page: Page) -> int:
    return int(page.locator("#flow").get_attribute("data-total"))


def play_to_end(page: Page, keys: list[str]) -> int:
    total = total_of(page)
    for n in range(1, total + 1):
        page.keyboard.press(keys[n % len(keys)])
        expect(log_items(page)).to_have_count(n)
    return total


@pytest.mark.parametrize(
    ("slug", "lang", "next_label", "done_text"),
    [
        ("basic-pop3", "ja", "次へ", "まとめ"),
        ("basic-imap", "en", "Next", "Summary"),
    ],
)
def test_play_to_the_end_with_the_keyboard(
    page: Page, live_url: str, slug: str, lang: str, next_label: str, done_text: str
) -> None:
    page.goto(f"{live_url}/flow/{slug}?lang={lang}")
    expect(page.locator("section.panel")).to_have_count(4)
    expect(page.get_by_role("button", name=next_label)).to_be_enabled()
    expect(page.locator("#progress")).to_have_text(f"0 / {total_of(page)}")
    # Arrow keys, Space and PageDown (a presenter's clicker) all advance one line.
    total = play_to_end(page, ["ArrowRight", " ", "PageDown"])
    expect(page.locator("#progress")).to_have_text(f"{total} / {total}")
    expect(page.get_by_role("button", name=next_label)).to_be_disabled()
    expect(page.locator("#summary")).to_be_visible()
    expect(page.locator("#summary")).to_contain_text(done_text)
    expect(page.locator("section.panel[aria-current=step]")).to_have_attribute("data-panel", "4")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{slug}-{lang}-end.png"))
    # Back (ArrowLeft / PageUp) removes the last line, and the log follows.
    page.keyboard.press("ArrowLeft")
    expect(log_items(page)).to_have_count(total - 1)
    page.keyboard.press("PageUp")
    expect(log_items(page)).to_have_count(total - 2)
    expect(page.locator("#summary")).to_be_hidden()
    page.keyboard.press("Home")
    expect(log_items(page)).to_have_count(0)


def test_panels_light_up_in_turn(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-pop3")
    seen = []
    for n in range(1, total_of(page) + 1):
        page.keyboard.press("ArrowRight")
        expect(log_items(page)).to_have_count(n)
        panel = page.locator("#log > li").last.get_attribute("data-panel")
        expect(page.locator("section.panel[aria-current=step]")).to_have_attribute(
            "data-panel", panel
        )
        if not seen or seen[-1] != panel:
            seen.append(panel)
    assert seen == ["1", "2", "3", "4"]


def test_step_deep_link_and_reload_keep_the_place(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-imap?step=7")
    expect(log_items(page)).to_have_count(7)
    expect(page.locator("#progress")).to_contain_text("7 /")
    page.keyboard.press("ArrowRight")
    expect(log_items(page)).to_have_count(8)
    expect(page).to_have_url(f"{live_url}/flow/basic-imap?step=8")


def test_presenter_mode_help_and_blank(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-pop3?step=9&present=1")
    expect(page.locator("body")).to_have_class("flow-page present")
    size = page.locator("#log > li .wire").first.evaluate(
        "el => parseFloat(getComputedStyle(el).fontSize)"
    )
    assert size >= 28
    page.keyboard.press("b")
    expect(page.locator("#blank")).to_be_visible()
    page.keyboard.press("b")
    expect(page.locator("#blank")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.keyboard.press("f")
    expect(page.locator("body")).not_to_have_class("flow-page present")


def test_phone_width_and_play_button(browser: Browser, live_url: str) -> None:
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.goto(f"{live_url}/flow/basic-pop3?step=3")
    # Nothing overflows sideways at 360 px.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360
    page.get_by_role("button", name="再生").click()
    expect(page.get_by_role("button", name="一時停止")).to_be_visible()
    expect(log_items(page)).to_have_count(5, timeout=5000)
    page.get_by_role("button", name="一時停止").click()
    expect(page.get_by_role("button", name="再生")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone-360.png"))
    context.close()


def test_reduced_motion_keeps_the_envelope_still(browser: Browser, live_url: str) -> None:
    context = browser.new_context(reduced_motion="reduce")
    page = context.new_page()
    page.goto(f"{live_url}/flow/basic-pop3")
    page.keyboard.press("ArrowRight")
    expect(log_items(page)).to_have_count(1)
    display = page.locator("#panel-1 .envelope").evaluate("el => getComputedStyle(el).display")
    assert display == "none"
    expect(page.locator("#panel-1")).to_have_attribute("aria-current", "step")
    context.close()


@pytest.mark.parametrize(
    ("slug", "lang", "must_show"),
    [
        ("auth-failure", "ja", ["535 5.7.8", "538 5.7.11", "530 5.7.0"]),
        ("imap-two-devices", "en", ["EXISTS", "EXPUNGE"]),
    ],
)
def test_exam_scenarios_play_to_the_end(
    page: Page, live_url: str, slug: str, lang: str, must_show: list[str]
) -> None:
    page.goto(f"{live_url}/flow/{slug}?lang={lang}")
    expect(page.locator("section.panel")).to_have_count(4)
    total = play_to_end(page, ["PageDown", "ArrowRight"])
    expect(page.locator("#progress")).to_have_text(f"{total} / {total}")
    expect(page.locator("#summary")).to_be_visible()
    log_text = page.locator("#log").inner_text()
    for text in must_show:
        assert text in log_text, text

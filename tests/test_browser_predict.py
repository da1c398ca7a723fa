"""Predict mode and the share button in Debian's Chromium, keyboard only."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser


def _page(browser: Browser, errors: list[str], **options: object) -> Page:
    context = browser.new_context(**options)  # type: ignore[arg-type]
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _point(page: Page) -> str | None:
    field = page.locator("input[name=point]")
    return field.get_attribute("value") if field.count() else None


def _send_and_wait(page: Page) -> None:
    before = _point(page)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(before) => { const f = document.querySelector('input[name=point]');"
        " return !f || f.value !== before; }",
        arg=before,
    )


def _type_instead(page: Page, line: str) -> None:
    page.keyboard.press("1")  # focus lands on the first candidate ...
    page.keyboard.press("Tab")  # ... and the text field is the next stop
    expect(page.locator("#predict-typed")).to_be_focused()
    page.keyboard.type(line)
    _send_and_wait(page)


def test_play_predict_mode_to_the_score_with_the_keyboard(browser: Browser, live_url: str) -> None:
    errors: list[str] = []
    page = _page(browser, errors, viewport={"width": 1280, "height": 900})
    page.goto(f"{live_url}/flow/basic-pop3?mode=predict&lang=en")
    expect(page.locator("#log > li")).to_have_count(1)
    # A wrong command typed in the field: the SMTP core's real 503.
    _type_instead(page, "MAIL FROM:<alice@a.example>")
    feedback = page.locator("#predict-feedback")
    expect(feedback).to_contain_text("503 5.5.1 Error: send HELO first")
    expect(feedback).to_be_focused()
    expect(page.locator("#log > li")).to_have_count(3)  # the real EHLO and its reply joined
    pop3_wrong_done = False
    for _ in range(60):
        legend = page.locator(".candidates legend")
        if not legend.count():
            break
        if (
            not pop3_wrong_done
            and "POP3" in legend.inner_text()
            and "PASS" in page.locator(".candidates").inner_text()
        ):
            _type_instead(page, "RETR 9")  # not logged in yet: the POP3 core says -ERR
            expect(feedback).to_contain_text("-ERR RETR is only valid after login")
            pop3_wrong_done = True
            continue
        key = "3" if page.locator("input[data-key='3']").count() else "1"
        page.keyboard.press(key)
        expect(page.locator(f"input[data-key='{key}']")).to_be_checked()
        expect(page.locator(f"input[data-key='{key}']")).to_be_focused()
        _send_and_wait(page)
    assert pop3_wrong_done
    score = page.locator("#predict-score-h")
    expect(score).to_be_visible()
    expect(score).to_be_focused()
    expect(page.locator(".score")).to_contain_text(" right")
    assert not errors, errors


def test_phone_width_without_sideways_scrolling(browser: Browser, live_url: str) -> None:
    errors: list[str] = []
    page = _page(browser, errors, viewport={"width": 360, "height": 740})
    for path in ("/flow/basic-imap?mode=predict", "/flow"):
        page.goto(f"{live_url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, (path, width)
    assert not errors, errors


def test_share_copies_the_deep_link_or_shows_it(browser: Browser, live_url: str) -> None:
    errors: list[str] = []
    page = _page(
        browser, errors, permissions=["clipboard-read", "clipboard-write"], base_url=live_url
    )
    page.goto(f"{live_url}/flow/basic-pop3?step=4&lang=en")
    button = page.get_by_role("button", name="Share this step")
    button.focus()
    page.keyboard.press("Enter")
    expected = f"{live_url}/flow/basic-pop3?step=4"
    expect(page.locator("#status")).to_have_text(f"Link copied: {expected}")
    assert page.evaluate("navigator.clipboard.readText()") == expected
    # No clipboard (a browser that refuses): the link is shown, selected, in a field.
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#log > li")).to_have_count(5)
    button.focus()
    page.keyboard.press("Enter")
    field = page.get_by_label("Copy this link:")
    expect(field).to_be_visible()
    expect(field).to_be_focused()
    expect(field).to_have_value(f"{live_url}/flow/basic-pop3?step=5")
    assert not errors, errors

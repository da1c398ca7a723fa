""""Record afresh" on the flow page, in Debian's Chromium: a private new run, kept on reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_record_afresh_gives_a_private_run_that_survives_a_reload(
    page: Page, live_url: str
) -> None:
    page.goto(f"{live_url}/flow/basic-pop3")
    shared = page.locator("#flow").get_attribute("data-session")
    stamp = page.locator(".recorded-at")
    expect(stamp).to_contain_text("本物のサーバで記録")
    expect(stamp).not_to_contain_text("あなた専用")

    # A same-origin form POST from the page (Chromium sends Origin): the middleware lets
    # it through, the server runs the scenario for this learner and redirects.
    page.get_by_role("button", name="新しく記録し直す").click()
    page.wait_for_url("**/flow/basic-pop3?session=*")
    own = page.locator("#flow").get_attribute("data-session")
    assert own and own != shared
    expect(page.locator(".recorded-at")).to_contain_text("この記録はあなた専用です")

    page.keyboard.press("ArrowRight")  # the websocket attaches to the private session
    expect(page.locator("#log > li")).to_have_count(1)
    page.reload()
    assert page.locator("#flow").get_attribute("data-session") == own
    expect(page.locator(".recorded-at")).to_contain_text("あなた専用")

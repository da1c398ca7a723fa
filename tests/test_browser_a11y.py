"""axe-core (vendored from npm, tests/vendor/) on every page, in Debian's Chromium.

The app's Content-Security-Policy allows only its own scripts, so the test context
bypasses CSP to inject axe; the pages themselves are served exactly as users get them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from served import Served

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
PAGES = [
    "/",
    "/flow",
    "/flow/basic-pop3?step=9",
    "/flow/basic-imap?step=75&present=1",
    "/flow/basic-pop3?mode=predict",
    "/lab",
    "/quiz",
    "/quiz/ports",
    "/quiz/exam",
    "/quiz/speed",
    "/quiz/stats",
    "/me",
    "/flow/basic-pop3/handout",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("a11y"), lab=True).start()
    yield s
    s.stop()


def serious(page: Page) -> list[str]:
    """Serious and critical axe violations on the page as it is now."""
    page.add_script_tag(content=AXE.read_text("utf-8"))
    found = page.evaluate(
        """async () => {
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations.filter((v) => ['serious', 'critical'].includes(v.impact))
        .map((v) => `${v.id}: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
    }"""
    )
    return found


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_no_serious_or_critical_violation_on_any_page(
    browser: Browser, site: Served, lang: str
) -> None:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: dict[str, list[str]] = {}
    for path in PAGES:
        sep = "&" if "?" in path else "?"
        response = page.goto(f"{site.url}{path}{sep}lang={lang}")
        assert response is not None and response.status == 200, path
        if "/flow/basic-pop3?step" in path:
            # The step mode with the ladder opened (L): its arrows are links.
            page.keyboard.press("l")
            expect(page.locator("[data-ladder] a[data-step]").first).to_be_visible()
        found = serious(page)
        if found:
            problems[path] = found
    context.close()
    assert not problems, problems

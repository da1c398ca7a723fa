"""The lab page on a phone, in Debian's Chromium: everything fits the width."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chromium import CHROMIUM_ARGS, EXECUTABLE
from playwright.sync_api import sync_playwright
from served import Served

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("site"), lab=True).start()
    yield s
    s.stop()


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_lab_page_fits_a_phone(site: Served, lang: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=EXECUTABLE, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 360, "height": 740})
        page.goto(f"{site.url}/lab?lang={lang}")
        wide = page.evaluate(
            """() => [...document.querySelectorAll('main *')]
                .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
                .map(e => e.tagName + ' ' + (e.textContent || '').trim().slice(0, 30))"""
        )
        assert wide == [], wide
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        browser.close()

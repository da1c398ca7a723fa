"""Debian's Chromium for the browser tests: one launch line for every file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

EXECUTABLE = "/usr/bin/chromium"  # Debian's package; `playwright install` cannot download here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=EXECUTABLE, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# For `page.wait_for_function`: a function, not an expression string. Playwright evals an
# expression string again at every poll, and the app's CSP (`script-src 'self'`, no
# 'unsafe-eval') refuses that eval; only a first check that already passes, run inside
# the DevTools call, got through (a test failed whenever htmx was not loaded yet). A
# function is evaluated once there and then called at each poll.
HTMX_LOADED = "() => window.htmx !== undefined"

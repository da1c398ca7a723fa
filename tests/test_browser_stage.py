"""The stage outside the flow page: the slide export, the handout, the ladder view."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser
PAGE_OPTIONS = {"viewport": {"width": 1280, "height": 800}}


def test_a_step_as_a_standalone_svg_parses_and_renders(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-pop3?step=9&lang=en")
    link = page.locator("a[data-slide]")
    # The link follows the step the learner is on.
    page.keyboard.press("ArrowRight")
    expect(page.locator("#log > li")).to_have_count(10)
    expect(link).to_have_attribute("href", re.compile(r"/flow/basic-pop3/step/10\.svg\?"))
    href = link.get_attribute("href")
    r = httpx.get(live_url + href, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    root = ElementTree.fromstring(r.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("font-family", "").endswith("sans-serif")
    assert not re.search(rb'(?:href|src)="(?:https?:)?//', r.content)
    # The learner's own run: the packet carries step 10's line (MSA's 235 reply).
    texts = "".join(root.itertext())
    assert "S: 235 2.7.0" in texts
    assert [el.get("data-link") for el in root.iter() if el.get("aria-current") == "true"] == [
        "mua-alice--msa-a"
    ]
    # Chromium draws it: the actors are laid out with real sizes.
    page.goto(live_url + href)
    size = page.evaluate(
        "() => { const b = document.querySelector('[data-actor=\"msa-a\"]').getBBox();"
        " return [document.documentElement.tagName, b.width, b.height]; }"
    )
    assert size[0] == "svg" and size[1] > 100 and size[2] > 50


def test_the_handout_prints_on_a4(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-pop3?lang=ja")
    href = page.locator("a[href*='/handout']").get_attribute("href")
    assert href is not None
    page.goto(live_url + href)
    lines = page.locator(".handout-log > li").count()
    assert lines > 50  # every line of the run, each with its explanation
    expect(page.locator(".handout-log .rfc").first).to_contain_text("RFC")
    expect(page.locator("[data-ladder], .handout-ladder").locator("a[data-step]")).to_have_count(
        lines
    )
    pdf = page.pdf(format="A4")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 2 <= pages <= 40, pages


def test_the_ladder_toggles_and_a_click_jumps_there(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-imap?step=3&lang=en")
    ladder = page.locator("[data-ladder]")
    expect(ladder).to_be_hidden()
    page.keyboard.press("l")
    expect(ladder).to_be_visible()
    expect(ladder.locator("a[data-step][aria-current=step]")).to_have_attribute("data-step", "3")
    ladder.locator('a[data-step="27"]').click()
    expect(page.locator("#log > li")).to_have_count(27)
    expect(ladder.locator("a[data-step][aria-current=step]")).to_have_attribute("data-step", "27")
    # Step 27 is the MTA's EHLO to the MX: the stage shows that hop.
    expect(page.locator('svg[data-stage="full"] [data-link][aria-current=true]')).to_have_attribute(
        "data-link", "mta-a--mta-b"
    )
    page.get_by_role("button", name="Ladder view").click()
    expect(ladder).to_be_hidden()


def test_the_live_region_says_each_step_in_words(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-pop3?step=6&lang=en")
    live = page.locator("[data-stage-live][aria-live=polite]")
    page.keyboard.press("ArrowRight")  # step 7: the EHLO again, now inside TLS
    expect(page.locator("#log > li")).to_have_count(7)
    expect(live).to_have_text(re.compile(r"^MUA → MSA, SMTP 587, TLS: EHLO alice-laptop"))
    page.keyboard.press("ArrowLeft")
    expect(live).to_have_text(re.compile(r"^MSA: TLSv1\.3"))
    page.goto(f"{live_url}/flow/basic-pop3?step=1&lang=en")
    page.keyboard.press("ArrowRight")
    expect(live).to_have_text(re.compile(r"^MUA → MSA, SMTP 587, not encrypted: EHLO"))


def test_a_flow_page_is_light_on_the_wire(browser: Browser, live_url: str) -> None:
    """First visit under 50 KB, a repeat visit under 20 KB (static files revalidate)."""
    context = browser.new_context()
    page = context.new_page()

    def visit() -> int:
        responses: list = []

        def seen(response: object) -> None:
            responses.append(response)

        page.on("response", seen)
        page.goto(f"{live_url}/flow/tls-ports?step=40", wait_until="load")
        expect(page.locator("#log > li")).to_have_count(40)
        page.remove_listener("response", seen)
        total = 0
        for r in responses:
            sizes = r.request.sizes()
            # A response served from the browser's cache crossed no wire (sizes < 0).
            total += max(0, sizes["responseBodySize"]) + max(0, sizes["responseHeadersSize"])
        return total

    first = visit()
    again = visit()
    context.close()
    assert first <= 50 * 1024, first
    assert again <= 20 * 1024, again



MAILS = """() => [...document.querySelectorAll('svg[data-stage="full"] [data-mail]')]
  .map((m) => m.getAttribute('class'))"""


def test_the_mail_is_marked_by_dele_removed_at_quit_and_back_restores_it(
    page: Page, live_url: str
) -> None:
    page.goto(f"{live_url}/flow/basic-pop3?lang=en&step=77")
    session = page.locator("#flow").get_attribute("data-session")
    states = {77: page.evaluate(MAILS)}
    for n in range(78, 84):
        page.keyboard.press("ArrowRight")
        expect(page.locator("#log > li")).to_have_count(n)
        states[n] = page.evaluate(MAILS)
        # What the page paints is what the server draws for that step of the same run.
        svg = httpx.get(f"{live_url}/flow/basic-pop3/step/{n}.svg?session={session}").text
        assert states[n] == re.findall(r'class="(mail kind-\w+ is-\w+)"', svg), n
    files = {n: [c for c in classes if "kind-file" in c] for n, classes in states.items()}
    # DELE's +OK (step 79) only marks the file; QUIT's UPDATE state removes it (step 82).
    expect(page.locator("#log > li").nth(78)).to_contain_text("marked for deletion")
    assert files[78] == ["mail kind-file is-here"] and files[79] == ["mail kind-file is-deleted"]
    assert files[81] == ["mail kind-file is-deleted"] and files[82] == ["mail kind-file is-gone"]
    # ← walks it back exactly.
    for n in range(82, 76, -1):
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#log > li")).to_have_count(n)
        assert page.evaluate(MAILS) == states[n], n


@pytest.mark.parametrize("slug", ["basic-pop3", "lookalike-domain", "ppap", "spoofing"])
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_actor_name_stays_inside_its_box(
    page: Page, live_url: str, slug: str, lang: str
) -> None:
    # Measured with the real fonts: Japanese names have no spaces to break at.
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{live_url}/flow/{slug}?lang={lang}")
    outside = page.evaluate(
        """() => [...document.querySelectorAll('svg[data-stage=full] [data-actor]')]
            .flatMap(g => {
                const r = g.querySelector('rect').getBBox();
                return [...g.querySelectorAll('text')].map(t => [g.dataset.actor, t.getBBox()])
                    .filter(([, b]) => b.x < r.x + 2 || b.x + b.width > r.x + r.width - 2
                                       || b.y < r.y || b.y + b.height > r.y + r.height)
                    .map(([id, b]) => id + ' ' + Math.round(b.width));
            })"""
    )
    assert outside == []

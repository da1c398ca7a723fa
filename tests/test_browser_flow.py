"""The flow page in Debian's Chromium, driven with the keyboard only, as a learner
or a presenter's clicker would drive it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def log_items(page: Page):
    return page.locator("#log > li")


# The largest visible stage (a page carries a full and a compact one).
STAGE = """() => [...document.querySelectorAll('svg[data-stage]')]
  .filter((s) => s.getBoundingClientRect().width > 0)
  .sort((a, b) => b.getBoundingClientRect().width - a.getBoundingClientRect().width)[0]"""

# Once the packet's travel (if any) has ended: where it is and what is current.
SETTLED = f"""async () => {{
  const svg = ({STAGE})();
  const packet = svg.querySelector('[data-packet]');
  await Promise.all(packet.getAnimations().map((a) => a.finished));
  const box = (el) => {{ const r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom]; }};
  const link = svg.querySelector('[data-link][aria-current="true"]');
  return {{
    link: link ? link.dataset.link : null,
    links: svg.querySelectorAll('[data-link][aria-current="true"]').length,
    packet: getComputedStyle(packet).display === 'none' ? null : box(packet.querySelector('.body')),
    labels: [...svg.querySelectorAll('[data-actor] text')].map(box),
    animations: packet.getAnimations().length,
    current: [...document.querySelectorAll('[role=log] li[aria-current=step]')].map((li) => li.id),
  }};
}}"""


def settled(page: Page) -> dict:
    return page.evaluate(SETTLED)


def overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
    expect(page.locator('svg[data-stage="full"]')).to_be_visible()
    expect(page.get_by_role("button", name=next_label)).to_be_enabled()
    expect(page.locator("#progress")).to_have_text(f"0 / {total_of(page)}")
    # Arrow keys, Space and PageDown (a presenter's clicker) all advance one line.
    total = play_to_end(page, ["ArrowRight", " ", "PageDown"])
    expect(page.locator("#progress")).to_have_text(f"{total} / {total}")
    expect(page.get_by_role("button", name=next_label)).to_be_disabled()
    expect(page.locator("#summary")).to_be_visible()
    expect(page.locator("#summary")).to_contain_text(done_text)
    # The last line is Bob's retrieval: the server's session with the mailbox.
    last = settled(page)
    assert last["link"] in ("mailbox:bob@b.example--pop3-b", "mailbox:bob@b.example--imap-b")
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


@pytest.mark.parametrize("viewport", [(1280, 800), (360, 740)])
def test_the_packet_follows_each_hop_never_covers_a_label_and_back_returns_it(
    browser: Browser, live_url: str, viewport: tuple[int, int]
) -> None:
    w, h = viewport
    context = browser.new_context(viewport={"width": w, "height": h}, is_mobile=w < 500)
    page = context.new_page()
    page.goto(f"{live_url}/flow/basic-pop3?lang=en")
    before = settled(page)
    assert before["link"] is None and before["packet"] is None and before["current"] == []
    seen: list[str] = []
    states = [before]
    for n in range(1, total_of(page) + 1):
        page.keyboard.press("ArrowRight")
        expect(log_items(page)).to_have_count(n)
        state = settled(page)
        states.append(state)
        li = page.locator("#log > li").last
        src, dst = li.get_attribute("data-src"), li.get_attribute("data-dst")
        # Contract: one current line, one current link; a line's link joins its two actors.
        assert state["current"] == [f"ev-{n}"] and state["links"] == 1, state
        if "dir-note" not in (li.get_attribute("class") or ""):
            assert set(state["link"].split("--")) == {src, dst}, (n, state["link"])
        assert not any(overlaps(state["packet"], label) for label in state["labels"]), n
        if not seen or seen[-1] != state["link"]:
            seen.append(state["link"])
    # The journey's hops, in order, as the four stages pass.
    assert seen[:3] == ["mua-alice--msa-a", "mta-a--dns", "mta-a--mta-b"], seen
    assert "mta-b--mda-b" in seen and "mda-b--mailbox:bob@b.example" in seen
    assert seen[-1] == "mailbox:bob@b.example--pop3-b"
    # Where the hop changes, the packet moves; ← puts it back exactly.
    links = [state["link"] for state in states]
    change = next(i for i in range(1, len(links) - 1) if links[i] != links[i + 1])
    page.goto(f"{live_url}/flow/basic-pop3?lang=en&step={change}")
    at = settled(page)
    page.keyboard.press("ArrowRight")
    expect(log_items(page)).to_have_count(change + 1)
    moved = settled(page)
    assert moved["packet"] != at["packet"] and moved["link"] != at["link"]
    page.keyboard.press("ArrowLeft")
    expect(log_items(page)).to_have_count(change)
    back = settled(page)
    assert back["link"] == at["link"] and back["current"] == [f"ev-{change}"]
    assert back["packet"] == pytest.approx(at["packet"], abs=0.5)
    # No sideways scrolling, and on a phone the compact stage stays in view.
    assert page.evaluate("document.documentElement.scrollWidth") <= w
    if w < 500:
        page.goto(f"{live_url}/flow/basic-pop3?lang=en&step=70")
        for n in range(71, 76):
            page.keyboard.press("ArrowRight")
            expect(log_items(page)).to_have_count(n)
        stage = page.locator('svg[data-stage="compact"]').bounding_box()
        controls = page.locator("form.controls").bounding_box()
        assert page.evaluate("window.scrollY") > 0
        assert stage is not None and controls is not None
        assert stage["y"] >= 0 and stage["y"] + stage["height"] <= controls["y"]
        assert page.locator('svg[data-stage="full"]').bounding_box() is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"stage-{w}.png"))
    context.close()


def test_step_deep_link_and_reload_keep_the_place(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/flow/basic-imap?step=7")
    expect(log_items(page)).to_have_count(7)
    expect(page.locator("#progress")).to_contain_text("7 /")
    page.keyboard.press("ArrowRight")
    expect(log_items(page)).to_have_count(8)
    expect(page).to_have_url(f"{live_url}/flow/basic-imap?step=8")


CONTRAST = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const v = rgb(c).map((x) => { x /= 255;
    return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  let bg = el;
  while (getComputedStyle(bg).backgroundColor === 'rgba(0, 0, 0, 0)') bg = bg.parentElement;
  const [a, b] = [lum(getComputedStyle(el).color), lum(getComputedStyle(bg).backgroundColor)];
  return { ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05),
           opacity: Number(getComputedStyle(el.closest('li')).opacity) };
}"""


def test_presenter_mode_stage_large_line_dimmed_past_and_blank(
    browser: Browser, live_url: str
) -> None:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.goto(f"{live_url}/flow/basic-pop3?step=9&present=1&lang=en")
    expect(page.locator("body")).to_have_class("flow-page present")
    # The stage takes at least half the screen.
    box = page.locator('svg[data-stage="full"]').bounding_box()
    assert box is not None and box["width"] * box["height"] >= 0.5 * 1920 * 1080, box
    current = page.locator("#log > li[aria-current=step]")
    expect(current).to_have_attribute("id", "ev-9")
    size = current.locator(".wire").evaluate("el => parseFloat(getComputedStyle(el).fontSize)")
    assert size >= 32
    # Under the stage, in view.
    line = current.locator(".wire").bounding_box()
    assert line is not None and line["y"] >= box["y"] + box["height"] - 1
    assert line["y"] + line["height"] <= 1080
    # Earlier lines step back but stay readable (WCAG 4.5:1, no fading by opacity).
    past = page.locator("#log > li").first.locator(".wire").evaluate(CONTRAST)
    assert past["ratio"] >= 4.5 and past["opacity"] == 1, past
    page.keyboard.press("b")
    expect(page.locator("#blank")).to_be_visible()
    page.keyboard.press("b")
    expect(page.locator("#blank")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "stage-presenter-1920.png"))
    # Across a hop change (the MSA's last reply → the MTA's DNS query) the packet moves,
    # never over a label, and ← brings it back.
    page.goto(f"{live_url}/flow/basic-pop3?step=21&present=1&lang=en")
    at = settled(page)
    page.keyboard.press("ArrowRight")
    expect(log_items(page)).to_have_count(22)
    moved = settled(page)
    assert (at["link"], moved["link"]) == ("mua-alice--msa-a", "mta-a--dns")
    assert moved["packet"] != at["packet"]
    assert not any(overlaps(moved["packet"], label) for label in moved["labels"])
    page.keyboard.press("ArrowLeft")
    expect(log_items(page)).to_have_count(21)
    assert settled(page)["packet"] == pytest.approx(at["packet"], abs=0.5)
    page.keyboard.press("f")
    expect(page.locator("body")).not_to_have_class("flow-page present")
    context.close()


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


def test_reduced_motion_nothing_travels_but_every_end_state_is_the_same(
    browser: Browser, live_url: str
) -> None:
    ends = []
    for motion in ("no-preference", "reduce"):
        context = browser.new_context(reduced_motion=motion)
        page = context.new_page()
        page.goto(f"{live_url}/flow/basic-pop3?lang=en&step=20")
        travelled = []
        states = []
        for n in range(21, 27):
            page.keyboard.press("ArrowRight")
            expect(log_items(page)).to_have_count(n)
            travelled.append(page.evaluate(f"() => ({STAGE})().querySelector('[data-packet]')"
                                           ".getAnimations().length"))
            states.append(settled(page))
        ends.append(states)
        if motion == "reduce":
            assert travelled == [0] * 6
        else:
            assert any(travelled)
        context.close()
    moving, still = ([(s["link"], s["packet"]) for s in run] for run in ends)
    assert moving == still


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
    expect(page.locator("[data-stage] [data-actor]").first).to_be_attached()
    total = play_to_end(page, ["PageDown", "ArrowRight"])
    expect(page.locator("#progress")).to_have_text(f"{total} / {total}")
    expect(page.locator("#summary")).to_be_visible()
    log_text = page.locator("#log").inner_text()
    for text in must_show:
        assert text in log_text, text

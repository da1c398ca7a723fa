"""Predict the next line: the cores judge the learner's line on a mirror of the
recorded run; the pages work as plain forms and as htmx fragments."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from app.engines.tls import LabTLS
from app.events import Event
from app.scenarios.model import load_all
from app.scenarios.runner import Recording, run_scenario
from app.web.predict_game import (
    BadGuess,
    answer,
    candidates,
    new_state,
    read_guess,
)
from app.web.predict_replay import is_command, probe_at

NASTY = [
    "",
    " ",
    "\x00\x01\x7f",
    "ＭＡＩＬ FROM:<a@a.example>",
    "x" * 1000,
    "A1 APPEND INBOX {5}",
    "A1 LOGIN {3}",
    '"unterminated',
    "RETR -1",
    "RETR 99999999999999999999",
    "TOP 1 -5",
    "AUTH PLAIN ===",
    "<script>alert(1)</script>",
    "\udcff",
]


@pytest.fixture(scope="module")
def runs(lab_tls: LabTLS, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recording]:
    scenarios = load_all()
    out = {}
    for slug in ("basic-pop3", "basic-imap"):
        out[slug] = asyncio.run(
            run_scenario(scenarios[slug], lab_tls, tmp_path_factory.mktemp("runs"), "ja")
        )
    return out


def _point(events: tuple[Event, ...], verb: str, protocol: str) -> int:
    """The first recorded client command `verb` of `protocol` (IMAP: after the tag)."""
    for i, e in enumerate(events):
        words = e.text.split(" ")
        if e.protocol == "IMAP":
            words = words[1:]
        if is_command(e) and e.protocol == protocol and words and words[0].upper() == verb:
            return i
    raise AssertionError(f"no {protocol} {verb}")


def _reply(events: tuple[Event, ...], index: int) -> str:
    return next(
        e.text
        for e in events[index + 1 :]
        if e.session == events[index].session and e.direction == "s2c"
    )


@pytest.mark.parametrize("slug", list(load_all()))
def test_every_scenario_the_cores_answer_the_recorded_line_as_the_server_did(
    lab_tls: LabTLS, tmp_path: Path, slug: str
) -> None:
    """The mirror is faithful: each core, brought to the point, answers as the real
    server did; and every question offers 3-4 candidates with the recorded one."""
    rec = asyncio.run(run_scenario(load_all()[slug], lab_tls, tmp_path, "ja"))
    events = rec.events
    state = new_state(events)
    assert state.points
    for i in state.points:
        got = probe_at(events, i).ask(events[i].text)
        assert got.text == _reply(events, i), (slug, events[i].text)
        offered = candidates(state, events, "seed")
        assert 3 <= len(offered) <= 4 and events[i].text in offered
        answer(state, events, events[i].text, typed=False)
    assert state.done and state.score == len(state.points)


def test_no_data_content_auth_continuation_or_note_is_asked(runs: dict[str, Recording]) -> None:
    for rec in runs.values():
        for e in rec.events:
            if is_command(e):
                assert e.direction == "c2s"
                assert not e.key.endswith((".data.content", ".data.end", ".auth.response"))


def test_pop3_transaction_accepts_any_valid_command(runs: dict[str, Recording]) -> None:
    events = runs["basic-pop3"].events
    at = _point(events, "LIST", "POP3")
    for line in ("STAT", "LIST", "UIDL", "RETR 1", "NOOP"):
        assert probe_at(events, at).ask(line).ok, line
    assert probe_at(events, at).ask("RETR 2").text == "-ERR no such message, only 1 in maildrop"
    assert probe_at(events, at).ask("USER bob").text == "-ERR USER is only valid before login"
    before_login = _point(events, "USER", "POP3")
    assert probe_at(events, before_login).ask("STAT").text == "-ERR STAT is only valid after login"
    wrong = probe_at(events, _point(events, "PASS", "POP3")).ask("PASS guess")
    assert wrong.text == "-ERR [AUTH] invalid user name or password"


def test_smtp_order_replies_at_recorded_points(runs: dict[str, Recording]) -> None:
    events = runs["basic-pop3"].events
    first_ehlo = _point(events, "EHLO", "SMTP")
    assert probe_at(events, first_ehlo).ask("MAIL FROM:<alice@a.example>").text == (
        "503 5.5.1 Error: send HELO first"
    )
    starttls = _point(events, "STARTTLS", "SMTP")
    auth = "AUTH PLAIN AGFsaWNlQGEuZXhhbXBsZQBhbGljZS1wYXNz"
    assert probe_at(events, starttls).ask(auth).text.startswith("538 5.7.11")
    auth_point = _point(events, "AUTH", "SMTP")
    assert probe_at(events, auth_point).ask("MAIL FROM:<alice@a.example>").text == (
        "530 5.7.0 Authentication required"
    )
    rcpt = _point(events, "RCPT", "SMTP")
    assert probe_at(events, rcpt).ask("DATA").text == "503 5.5.1 Error: need RCPT command"
    lmtp = _point(events, "LHLO", "LMTP")
    assert probe_at(events, lmtp).ask("EHLO x").text == '500 Error: command "EHLO" not recognized'


def test_imap_state_errors_come_from_the_core(runs: dict[str, Recording]) -> None:
    events = runs["basic-imap"].events
    select = _point(events, "SELECT", "IMAP")
    tag = events[select].text.split(" ")[0]
    got = probe_at(events, select).ask(f"{tag} FETCH 1 (FLAGS)")
    assert got.text == f"{tag} BAD Command not valid in this state: select a mailbox first"
    assert probe_at(events, select).ask(f'{tag} LIST "" *').ok
    login = _point(events, "LOGIN", "IMAP")
    got = probe_at(events, login).ask(f'{tag} LOGIN bob@b.example "nope"')
    assert got.text == f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials"
    # The mirror holds the delivered mail: FETCH sees it, and the flag STORE set later.
    fetch = _point(events, "FETCH", "IMAP")
    # \Recent: this session was the first to select the mailbox (RFC 3501 §2.3.2).
    got = probe_at(events, fetch).ask(f"{tag} FETCH 1 (FLAGS)").text
    assert "* 1 FETCH (FLAGS (\\Recent))" in got


@pytest.mark.parametrize("slug", ["basic-pop3", "basic-imap"])
def test_nonsense_gets_the_cores_error_never_a_crash(runs: dict[str, Recording], slug: str) -> None:
    events = runs[slug].events
    for i, e in enumerate(events):
        if not is_command(e):
            continue
        for line in NASTY:
            got = probe_at(events, i).ask(line)
            assert isinstance(got.text, str)
            if line in ("", " ", "\x00\x01\x7f", '"unterminated', "<script>alert(1)</script>"):
                assert not got.ok, (e.text, line, got)


def test_candidates_hold_the_recorded_line_and_a_wrong_one(runs: dict[str, Recording]) -> None:
    events = runs["basic-pop3"].events
    state = new_state(events)
    for _ in state.points:
        offered = candidates(state, events, "seed")
        point = state.point
        assert point is not None
        assert 3 <= len(offered) <= 4
        assert events[point].text in offered
        assert len(set(offered)) == len(offered)
        verdicts = [probe_at(events, point).ask(c).ok for c in offered]
        assert not all(verdicts), offered
        assert candidates(state, events, "seed") == offered  # fixed per question
        answer(state, events, events[point].text, typed=False)
    assert state.done and state.score == len(state.points)


def test_answers_are_judged_by_the_core_not_the_recording(runs: dict[str, Recording]) -> None:
    events = runs["basic-pop3"].events
    state = new_state(events)
    turn = answer(state, events, "RSET", typed=True)  # at the first EHLO: valid, not recorded
    assert turn.right and not turn.matched and turn.answer and turn.answer.text == "250 2.0.0 Ok"
    turn = answer(state, events, "DATA", typed=True)  # at STARTTLS, before AUTH on 587
    assert not turn.right and turn.answer
    assert turn.answer.text == "530 5.7.0 Authentication required"
    assert state.score == 1 and state.number == 2


def _event(seq: int, direction: str, text: str, key: str) -> Event:
    return Event(seq, "s9", 2, "mta-a", "mta-b", "SMTP", 25, False, direction, text, key)  # type: ignore[arg-type]


def test_a_recorded_line_the_server_refused_still_counts_as_predicted() -> None:
    KEY = "smtp.ehlo.250"
    events = (
        _event(1, "s2c", "220 mx.b.example MailFlow Lab", "smtp.greeting.220"),
        _event(2, "c2s", "EHLO mail.a.example", "smtp.ehlo"),
        _event(3, "s2c", "250-mx.b.example\n250-STARTTLS\n250-ENHANCEDSTATUSCODES\n250 HELP", KEY),
        _event(4, "c2s", "RCPT TO:<bob@b.example>", "smtp.rcpt"),
        _event(5, "s2c", "503 5.5.1 Error: need MAIL command", "smtp.rcpt.503"),
        _event(6, "c2s", "QUIT", "smtp.quit"),
        _event(7, "s2c", "221 2.0.0 Bye", "smtp.quit.221"),
    )
    state = new_state(events)
    assert state.points == (1, 3, 5)
    answer(state, events, "EHLO mail.a.example", typed=False)
    turn = answer(state, events, "RCPT TO:<bob@b.example>", typed=False)
    assert turn.matched and turn.right  # what the client really did, mistake and all
    assert turn.answer and turn.answer.text == "503 5.5.1 Error: need MAIL command"
    assert probe_at(events, 5).ask("DATA").text == "503 5.5.1 Error: need RCPT command"


def test_read_guess() -> None:
    offered = ["STAT", "LIST", "RETR 1"]
    assert read_guess("2", "", offered) == ("LIST", False)
    assert read_guess("2", "  UIDL ", offered) == ("  UIDL ", True)  # typed wins, kept as typed
    for choice, typed, code in [
        (None, None, "empty"),
        ("", "   ", "empty"),
        ("9", "", "choice"),
        ("x", "", "choice"),
        (None, "a\nb", "one_line"),
        (None, "x" * 1001, "too_long"),
    ]:
        with pytest.raises(BadGuess) as info:
            read_guess(choice, typed, offered)
        assert info.value.code == code


# -- the pages -------------------------------------------------------------------------


@pytest.fixture
def http(live_url: str):
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


def _form(html: str) -> dict[str, str]:
    return {
        "session": re.search(r'name="session" value="([^"]+)"', html).group(1),
        "point": re.search(r'name="point" value="(\d+)"', html).group(1),
    }


def test_predict_page_asks_before_the_first_client_command(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?mode=predict")
    assert r.status_code == 200
    assert "次の行を予想" in r.text
    assert r.text.count('<li class="ev') == 1  # the greeting; the client's EHLO is the question
    assert len(re.findall(r'type="radio" name="choice"', r.text)) in (3, 4)
    assert 'id="predict-typed"' in r.text and "<label" in r.text
    assert 'hx-post="/flow/basic-pop3/predict' in r.text


def test_plain_post_answers_and_redirects_back(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?mode=predict&lang=en")
    form = _form(r.text)
    r = http.post(
        "/flow/basic-pop3/predict?lang=en", data={**form, "typed": "MAIL FROM:<a@a.example>"}
    )
    assert r.status_code == 303
    page = http.get(r.headers["location"])
    assert "Not this one." in page.text
    assert "503 5.5.1 Error: send HELO first" in page.text
    assert page.text.count('<li class="ev') == 3  # greeting, the real EHLO and its reply
    # The same form again (a double submit) answers nothing twice.
    again = http.post("/flow/basic-pop3/predict?lang=en", data={**form, "choice": "1"})
    assert again.status_code == 303
    assert http.get(again.headers["location"]).text.count('<li class="ev') == 3


def test_htmx_answer_returns_the_turn_and_the_new_lines(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?mode=predict&lang=en")
    form = _form(r.text)
    hx = {"HX-Request": "true"}
    r = http.post("/flow/basic-pop3/predict?lang=en", data={**form, "choice": ""}, headers=hx)
    assert r.status_code == 200 and 'role="alert"' in r.text
    assert "Choose one of the commands or type one." in r.text
    r = http.post(
        "/flow/basic-pop3/predict?lang=en",
        data={**form, "typed": "<script>alert(1)</script>"},
        headers=hx,
    )
    assert r.status_code == 200
    assert r.text.startswith('<section id="predict-turn"')
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert (
        "500 5.5.1 Error: command &#34;&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;&#34; not recognized"
        in r.text
    )
    assert 'hx-swap-oob="beforeend:#log"' in r.text
    assert r.text.count('<li class="ev') == 2 and 'id="ev-2"' in r.text


def test_playing_to_the_end_shows_the_score(http: httpx.Client) -> None:
    r = http.get("/flow/basic-imap?mode=predict&lang=en")
    form = _form(r.text)
    url = "/flow/basic-imap/predict?lang=en"
    asked = 0
    while 'name="point"' in r.text:
        form["point"] = re.search(r'name="point" value="(\d+)"', r.text).group(1)
        r = http.post(url, data={**form, "choice": "1"}, headers={"HX-Request": "true"})
        asked += 1
        assert asked < 100
    assert "Your score" in r.text
    score = re.search(r'class="score" role="status">(\d+) of (\d+) right', r.text)
    assert score and int(score.group(2)) == asked
    assert "Summary: who spoke to whom" in r.text


def test_expired_session_and_bad_mode_and_slug(http: httpx.Client) -> None:
    r = http.post("/flow/basic-pop3/predict", data={"session": "gone", "point": "0"})
    assert r.status_code == 410 and "/flow/basic-pop3?mode=predict" in r.text
    r = http.post(
        "/flow/basic-pop3/predict", data={"session": "gone"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200 and 'id="predict-turn"' in r.text
    r = http.get("/flow/basic-pop3?mode=<b>quiz</b>")
    assert r.status_code == 400
    assert "&lt;b&gt;quiz&lt;/b&gt;" in r.text and "<b>quiz" not in r.text
    assert 'href="/flow/basic-pop3?mode=predict"' in r.text
    assert http.get("/flow/no-such?mode=predict").status_code == 404
    assert http.post("/flow/no-such/predict", data={}).status_code == 404


def test_flow_page_links_predict_mode_and_has_a_share_button(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?step=3")
    assert 'href="/flow/basic-pop3?mode=predict"' in r.text
    assert "data-share" in r.text and "data-share-url" in r.text
    assert re.search(r"/static/js/share\.[0-9a-f]{8}\.js", r.text)


def test_reloading_with_the_session_resumes(http: httpx.Client) -> None:
    r = http.get("/flow/basic-pop3?mode=predict")
    form = _form(r.text)
    http.post("/flow/basic-pop3/predict", data={**form, "choice": "1"})
    again = http.get(f"/flow/basic-pop3?mode=predict&session={form['session']}")
    assert _form(again.text)["session"] == form["session"]
    assert _form(again.text)["point"] != form["point"]


@pytest.mark.parametrize("slug", ["dnsbl", "lookalike-domain", "rlo-attachment", "send-hold"])
def test_sg_scenarios_play_to_the_end_in_predict_mode(http: httpx.Client, slug: str) -> None:
    r = http.get(f"/flow/{slug}?mode=predict&lang=ja")
    assert r.status_code == 200 and "次の行を予想" in r.text
    form = _form(r.text)
    asked = 0
    while 'name="point"' in r.text:
        form["point"] = re.search(r'name="point" value="(\d+)"', r.text).group(1)
        r = http.post(
            f"/flow/{slug}/predict?lang=ja",
            data={**form, "choice": "1"},
            headers={"HX-Request": "true"},
        )
        assert r.status_code == 200
        asked += 1
        assert asked < 100
    score = re.search(r'class="score" role="status">(\d+)', r.text)
    assert score and asked >= 3

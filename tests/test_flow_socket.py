"""The flow websocket over real TCP: controls in, recorded events out, bad input refused."""

from __future__ import annotations

import contextlib
import json
import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.web.messages import Back, Goto, Move, Next, Restart


async def open_session(live_url: str, slug: str = "basic-pop3", step: int = 0) -> tuple[str, int]:
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as c:
        html = (await c.get(f"/flow/{slug}?step={step}")).text
    session = re.search(r'data-session="([^"]+)"', html).group(1)
    total = int(re.search(r'data-total="(\d+)"', html).group(1))
    return session, total


def ws_url(live_url: str) -> str:
    return live_url.replace("http://", "ws://") + "/ws/flow"


async def ask(ws, message) -> dict:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(await ws.recv())


async def test_next_and_back_walk_the_recording(live_url: str) -> None:
    session, total = await open_session(live_url)
    async with connect(ws_url(live_url)) as ws:
        ready = await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        assert ready == {
            "type": "ready",
            "session": session,
            "step": 0,
            "total": total,
            "panel": 0,
            "playing": False,
        }
        first = await ask(ws, {"type": "next"})
        assert first["type"] == "step" and first["step"] == 1 and first["panel"] == 1
        event = first["event"]
        assert event["text"].startswith("220 mail.a.example")
        assert {
            "seq",
            "session",
            "panel",
            "src",
            "dst",
            "protocol",
            "port",
            "tls",
            "direction",
            "text",
            "key",
        } <= event.keys()
        assert (
            first["html"].startswith('<li class="ev dir-s2c"')
            and "220 mail.a.example" in first["html"]
        )
        second = await ask(ws, {"type": "next"})
        assert second["event"]["text"].startswith("EHLO")
        back = await ask(ws, {"type": "back"})
        assert back["type"] == "back" and back["step"] == 1
        again = await ask(ws, {"type": "next"})
        # Back re-shows the recording; it never re-runs: the same line comes again.
        assert again["event"] == second["event"]


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        '{"type": "fly"}',
        '{"type": "speed", "value": 1000}',
        '{"type": "goto", "step": -3}',
        '{"type": "next", "extra": 1}',
        "{" * 5000,
    ],
)
async def test_malformed_messages_get_an_error_and_change_nothing(live_url: str, bad: str) -> None:
    session, _ = await open_session(live_url)
    async with connect(ws_url(live_url)) as ws:
        await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        await ask(ws, {"type": "next"})
        reply = await ask(ws, bad)
        assert reply["type"] == "error" and reply["code"] == "bad_message" and reply["message"]
        nxt = await ask(ws, {"type": "next"})  # still connected, still at the same place
        assert nxt["type"] == "step" and nxt["step"] == 2


async def test_binary_frames_and_controls_before_hello_are_refused(live_url: str) -> None:
    async with connect(ws_url(live_url)) as ws:
        reply = await ask(ws, {"type": "next"})
        assert reply == {
            "type": "error",
            "code": "no_session",
            "message": "send a hello message first",
        }
        await ws.send(b"\x00\x01binary")
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error" and reply["code"] == "bad_message"
        reply = await ask(ws, {"type": "hello", "slug": "nope"})
        assert reply["code"] == "unknown_scenario"


async def test_unknown_session_gets_a_fresh_run_at_the_requested_step(live_url: str) -> None:
    async with connect(ws_url(live_url)) as ws:
        sync = await ask(ws, {"type": "hello", "slug": "basic-imap", "session": "gone", "step": 3})
        assert sync["type"] == "sync" and sync["fresh"] is True and sync["step"] == 3
        assert sync["html"].count('<li class="ev') == 3
        assert sync["session"] != "gone"
        # Only the current line is marked; the new run's stage comes along, at step 3.
        assert sync["html"].count('aria-current="step"') == 1 and 'id="ev-3"' in sync["html"]
        stage = sync["stage_html"]
        assert 'data-stage="full"' in stage and 'data-stage="compact"' in stage
        assert 'id="stage-moves"' in stage and stage.count('aria-current="true"') == 2
        # A goto on the same run sends no stage: it has not changed.
        again = await ask(ws, {"type": "goto", "step": 5})
        assert again["type"] == "sync" and again["fresh"] is False and "stage_html" not in again


async def test_goto_restart_play_pause_speed_and_end(live_url: str) -> None:
    session, total = await open_session(live_url)
    async with connect(ws_url(live_url)) as ws:
        await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        sync = await ask(ws, {"type": "goto", "step": total - 1})
        assert sync["type"] == "sync" and sync["step"] == total - 1
        last = await ask(ws, {"type": "next"})
        assert last["step"] == total
        end = await ask(ws, {"type": "next"})
        assert end["type"] == "end" and end["step"] == total
        sync = await ask(ws, {"type": "restart"})
        assert sync["step"] == 0 and sync["html"] == ""
        state = await ask(ws, {"type": "speed", "value": 8})
        assert state["speed"] == 8
        state = await ask(ws, {"type": "play"})
        assert state["type"] == "state" and state["playing"] is True
        steps = [json.loads(await ws.recv()) for _ in range(3)]
        assert [s["step"] for s in steps] == [1, 2, 3]
        state = await ask(ws, {"type": "pause"})
        while state["type"] != "state":
            state = json.loads(await ws.recv())
        assert state["playing"] is False


async def frames_until_state(ws) -> tuple[list[dict], dict]:
    """Every frame up to the `state` reply that follows the messages sent before it."""
    frames = []
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] == "state" and msg.get("speed") == 2:
            return frames, msg
        frames.append(msg)


async def test_a_goto_flood_costs_its_sender_a_few_renders_and_ends_on_the_last_goto(
    live_url: str,
) -> None:
    session, total = await open_session(live_url)
    async with connect(ws_url(live_url), max_size=2**24) as ws:
        await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        gotos = [i % total for i in range(1999)] + [7]
        for step in gotos:
            await ws.send(json.dumps({"type": "goto", "step": step}))
        # While the flood is being worked off, another learner is answered.
        async with httpx.AsyncClient(base_url=live_url, timeout=60) as c:
            assert (await c.get("/healthz")).status_code == 200
        other, _ = await open_session(live_url)
        async with connect(ws_url(live_url)) as ws2:
            await ask(ws2, {"type": "hello", "slug": "basic-pop3", "session": other})
            assert (await ask(ws2, {"type": "next"}))["step"] == 1
        await ws.send(json.dumps({"type": "speed", "value": 2}))  # marks the flood's end
        frames, state = await frames_until_state(ws)
    # Old code: one full render per goto (2,000 syncs). Now: the burst of 50, then at
    # most 20 a second while gotos merge; 500 would take a 20-second flood.
    assert 0 < len(frames) < 500
    assert all(f["type"] == "sync" for f in frames)
    assert frames[-1]["step"] == 7 and state["step"] == 7
    assert frames[-1]["html"].count('<li class="ev') == 7


async def test_held_arrow_keys_end_on_the_step_the_keys_say(live_url: str) -> None:
    session, total = await open_session(live_url)
    keys = ["next"] * 40 + ["back"] * 3 + [3] + ["next"] * 9 + ["back"] * 2 + ["next"] * 600
    keys += ["back"] * 5 + ["restart"] + ["next"] * 4 + ["back"] * 9 + ["next"] * 6
    expected = 0
    async with connect(ws_url(live_url), max_size=2**24) as ws:
        await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        for key in keys:
            if key == "next":
                expected = min(expected + 1, total)
            elif key == "back":
                expected = max(expected - 1, 0)
            elif key == "restart":
                expected = 0
            else:
                expected = key
            msg = {"type": "goto", "step": key} if isinstance(key, int) else {"type": key}
            await ws.send(json.dumps(msg))
        await ws.send(json.dumps({"type": "speed", "value": 2}))
        frames, state = await frames_until_state(ws)
    assert expected == 6 and state["step"] == expected
    assert frames[-1]["step"] == expected
    assert len(frames) < len(keys)


async def closed_with(ws) -> tuple[int, str]:
    """The close code and reason; (0, "") if the marker sent last is answered instead."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "speed", "value": 2}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "state" and msg.get("speed") == 2:
                return 0, ""
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_socket_far_over_its_limit_is_closed_with_1008(live_url: str) -> None:
    session, _ = await open_session(live_url)
    async with connect(ws_url(live_url), max_size=2**24) as ws:
        await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        with contextlib.suppress(ConnectionClosed):
            for _ in range(6000):  # over the 5,000 allowed beyond the burst
                await ws.send('{"type":"goto","step":2}')
        code, reason = await closed_with(ws)
    assert code == 1008 and "20 messages a second" in reason


async def test_queued_controls_far_over_the_limit_close_the_socket(live_url: str) -> None:
    session, _ = await open_session(live_url)
    async with connect(ws_url(live_url), max_size=2**24) as ws:
        await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
        with contextlib.suppress(ConnectionClosed):
            for _ in range(1000):  # next and pause alternate: nothing merges
                await ws.send('{"type":"next"}')
                await ws.send('{"type":"pause"}')
        code, reason = await closed_with(ws)
    assert code == 1008 and "messages waiting" in reason


@given(
    total=st.integers(0, 40),
    start=st.integers(0, 40),
    keys=st.lists(st.one_of(st.sampled_from(["next", "back", "restart"]), st.integers(0, 50))),
)
def test_merged_moves_equal_the_moves_one_by_one(total: int, start: int, keys: list) -> None:
    position = min(start, total)
    expected, merged = position, None
    for key in keys:
        if key == "next":
            msg, expected = Next(type="next"), min(expected + 1, total)
        elif key == "back":
            msg, expected = Back(type="back"), max(expected - 1, 0)
        elif key == "restart":
            msg, expected = Restart(type="restart"), 0
        else:
            msg, expected = Goto(type="goto", step=key), min(key, total)
        move = Move.of(msg, total)
        merged = move if merged is None else merged.then(move)
    assert (merged.apply(position) if merged else position) == expected


async def test_learners_on_one_recording_share_its_rendered_steps(live_url: str) -> None:
    """Two learners on one recording: the second one's sync and `next`s send what the
    first one's rendered (old code: every socket rendered every line again)."""
    from app.web import flow_frames

    session, total = await open_session(live_url)
    frames: list[list[dict]] = []
    rendered: list[int] = []
    for _learner in range(2):
        async with connect(ws_url(live_url)) as ws:
            await ask(ws, {"type": "hello", "slug": "basic-pop3", "session": session})
            assert (await ask(ws, {"type": "goto", "step": 2}))["step"] == 2
            frames.append([await ask(ws, {"type": "next"}) for _ in range(3)])
        rendered.append(flow_frames.rendered)
    assert [f["step"] for f in frames[1]] == [3, 4, 5] and total > 5
    assert frames[0] == frames[1]
    assert rendered[1] == rendered[0]  # the second learner rendered nothing


async def test_frames_are_sent_uncompressed(live_url: str) -> None:
    """permessage-deflate is off (app/web/serving.py): the client offers it, the server
    declines, and the frames arrive as plain JSON text."""
    async with connect(ws_url(live_url)) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        reply = await ask(ws, {"type": "hello", "slug": "basic-pop3", "lang": "ja"})
        assert reply["type"] == "sync"

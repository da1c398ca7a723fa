"""The room's raw way out (app/rooms/wire.py) on the server setup the product runs:
uvicorn's sans-I/O websockets, with and without permessage-deflate. Real app, real
sockets; the `websockets` client offers compression as browsers do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from rooms_client import RoomSocket, cookie_header, create_room, join_room
from served import Served
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.rooms.wire import RawTransport

BOUND = 60  # seconds: a bound on waits for a reply, so a stalled room fails, not hangs


class SansIOServed(Served):
    """Served, on the websocket stack of app/__main__.py (ws="websockets-sansio")."""

    def __init__(self, data_dir: Path, deflate: bool) -> None:
        super().__init__(data_dir)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                ws="websockets-sansio", ws_per_message_deflate=deflate)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "deflate"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[SansIOServed]:
    s = SansIOServed(tmp_path_factory.mktemp("wire"), deflate=request.param).start()
    yield s
    s.stop()


async def _steps(s: SansIOServed) -> tuple[int, bool, list[list[str]]]:
    """Teacher + a student offering compression + one that does not: three steps."""
    code, teacher = create_room(s.url)
    a, b = join_room(s.url, code, nick="a"), join_room(s.url, code, nick="b")
    ts = await RoomSocket.open(s.url, teacher, code, "teacher")
    await ts.until("sync")
    sa = await RoomSocket.open(s.url, a, code, "student")
    await sa.until("sync")
    url = s.url.replace("http://", "ws://") + "/ws/room"
    plain = await connect(url, compression=None, max_size=2**22,
                          additional_headers={"Cookie": cookie_header(b), "Origin": s.url})
    sb = RoomSocket(plain)
    await sb.send(type="hello", code=code, role="student", lang="ja")
    await sb.until("sync")
    hub = s.app.state.rooms.hub
    before = hub.raw_writes
    got: list[list[str]] = [[], []]
    for step in (1, 2, 3):
        await ts.send(type="next")
        for n, sock in enumerate((sa, sb)):
            msg = await asyncio.wait_for(sock.until("step"), BOUND)
            assert msg["step"] == step and f'id="ev-{step}"' in msg["html"]
            got[n].append(msg["html"])
    compressed = bool(sa.ws.protocol.extensions)
    assert not plain.protocol.extensions
    for sock in (ts, sa, sb):
        await sock.close()
    return hub.raw_writes - before, compressed, got


def test_each_socket_gets_the_same_step_either_way(served: SansIOServed) -> None:
    raw, compressed, (with_offer, without) = asyncio.run(_steps(served))
    assert with_offer == without
    assert compressed == served.server.config.ws_per_message_deflate
    assert raw == 9  # teacher and both students, three steps: all the raw way


async def _slow_phone(s: SansIOServed) -> None:
    code, teacher = create_room(s.url)
    slow_http, fast_http = join_room(s.url, code, nick="slow"), join_room(s.url, code, "fast")
    ts = await RoomSocket.open(s.url, teacher, code, "teacher")
    await ts.until("sync")
    fast = await RoomSocket.open(s.url, fast_http, code, "student")
    await fast.until("sync")
    # A phone that stops reading: with a queue of one message its client stops reading
    # the socket as soon as a message is left unread, so the rest piles up on the server.
    url = s.url.replace("http://", "ws://") + "/ws/room"
    slow = RoomSocket(await connect(url, max_queue=1, max_size=2**22, additional_headers={
        "Cookie": cookie_header(slow_http), "Origin": s.url}))
    await slow.send(type="hello", code=code, role="student", lang="ja")
    await slow.until("sync")
    room = s.app.state.rooms.hub.rooms[code]
    slow_conn = next(c for c in room.conns if c.student and c.student.nick == "slow")
    meta = await s.app.state.rooms.service.meta(code)
    sent = 0
    while slow_conn in room.conns:
        assert sent < 2000, "the slow phone was never cut off"
        await ts.send(type="goto", step=meta.total - sent % 2)  # the whole log each time
        sent += 1
        # The class goes on while the slow phone's backlog grows: every `log` arrives.
        await asyncio.wait_for(ts.until("log"), BOUND)
        await asyncio.wait_for(fast.until("log"), BOUND)
    # Cut off, the slow phone sees its socket end (on reconnecting it would resync).
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(_drain(slow), BOUND)
    await ts.send(type="goto", step=1)  # and the room still reaches everyone else
    assert (await asyncio.wait_for(fast.until("log"), BOUND))["step"] == 1
    await ts.close()
    await fast.close()


async def _drain(sock: RoomSocket) -> None:
    while True:
        await sock.ws.recv()


def test_a_phone_that_stops_reading_is_cut_off_not_waited_for(
    served: SansIOServed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RawTransport, "max_backlog", 256 * 1024)
    monkeypatch.setattr(served.app.state.rooms, "messages_per_second", 10_000.0)
    asyncio.run(_slow_phone(served))

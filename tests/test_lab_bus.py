"""The lab's live view across processes: a web process without the lab shows the events
of the process that runs it, through a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer
from served import Served, send_one
from websockets.asyncio.client import connect


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    yield server.url
    server.stop()


def test_a_web_process_without_the_lab_shows_its_live_view(tmp_path: Path,
                                                           redis_url: str) -> None:
    lab = Served(tmp_path / "lab", lab=True, redis_url=redis_url).start()
    web = Served(tmp_path / "web", lab=False, redis_url=redis_url).start()
    try:
        async def watch() -> list[dict[str, object]]:
            url = web.url.replace("http://", "ws://") + "/ws/lab"
            async with connect(url) as ws:
                await ws.send(json.dumps({"type": "hello", "lang": "en"}))
                assert json.loads(await ws.recv())["type"] == "recent"
                await asyncio.to_thread(send_one, lab, "over the bus")
                seen = []
                while not any(e["event"]["text"].startswith("QUIT") for e in seen):
                    seen.append(json.loads(await ws.recv()))
                return seen

        seen = asyncio.run(watch())
        texts = [e["event"]["text"] for e in seen]
        assert any(t.lower().startswith("ehlo") for t in texts)  # smtplib writes "ehlo"
        assert any("AUTH" in t for t in texts)
    finally:
        web.stop()
        lab.stop()

"""The Redis bus against a real redis-server: a subscription is in place when
`subscribe` returns, so a state read after it cannot miss a change published meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from app.bus import BusError
from app.bus.redis import RedisBus


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path)
    yield server.url
    server.stop()


class HoldingProxy:
    """A loopback TCP relay to Redis that holds back what a client sends once it names
    SUBSCRIBE, until the test releases it: Redis has not seen the subscription yet."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self._pump(up_reader, writer, hold=False))
        self.tasks.add(back)
        await self._pump(reader, up_writer, hold=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    hold: bool) -> None:
        while data := await reader.read(65536):
            if hold and b"SUBSCRIBE" in data.upper():
                self.held.set()
                await self.release.wait()
            writer.write(data)
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()


async def _subscribe_waits_for_redis(redis_url: str) -> None:
    proxy = HoldingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    bus = RedisBus(await proxy.start())
    direct = aioredis.Redis.from_url(redis_url)
    got: list[bytes] = []
    try:
        subscribing = asyncio.create_task(bus.subscribe("room:X", got.append))
        await proxy.held.wait()
        # SUBSCRIBE was written (sending it never waits) but Redis has not seen it: a room
        # socket that now read the room would miss a step published before Redis does.
        assert not subscribing.done()
        proxy.release.set()
        await subscribing
        # Once subscribe has returned, a publish from another connection reaches it.
        assert await direct.publish("room:X", b"step") == 1
    finally:
        await bus.close()
        await direct.aclose()
        await proxy.close()


def test_subscribe_returns_once_redis_has_the_subscription(redis_url: str) -> None:
    asyncio.run(_subscribe_waits_for_redis(redis_url))


async def _unconfirmed_subscribe_fails_cleanly(redis_url: str) -> None:
    proxy = HoldingProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    bus = RedisBus(await proxy.start(), subscribe_seconds=0.2)
    direct = aioredis.Redis.from_url(redis_url)
    got: list[bytes] = []
    arrived = asyncio.Event()

    def handler(data: bytes) -> None:
        got.append(data)
        arrived.set()

    try:
        # Redis never sees the SUBSCRIBE (held): the bus gives up on its own, with an
        # error that says so, and keeps no half subscription ...
        with pytest.raises(BusError, match="did not confirm"):
            await bus.subscribe("room:X", handler)
        # ... so the next subscribe to that channel asks Redis again instead of waiting
        # for the first one's confirmation (before, it waited for ever while holding the
        # room hub's lock: every room socket of the worker hung).
        with pytest.raises(BusError, match="did not confirm"):
            await bus.subscribe("room:X", handler)
        proxy.release.set()
        sub = await bus.subscribe("room:X", handler)
        assert await direct.publish("room:X", b"step") == 1
        await arrived.wait()
        assert got == [b"step"]  # the failed subscriptions left no handler behind
        await sub.close()
    finally:
        await bus.close()
        await direct.aclose()
        await proxy.close()


def test_a_subscription_redis_never_confirms_fails_and_leaves_nothing(redis_url: str) -> None:
    asyncio.run(_unconfirmed_subscribe_fails_cleanly(redis_url))

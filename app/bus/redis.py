"""The Redis bus (redis-py asyncio): room state and fan-out shared by several web workers.

One connection pool for commands and one pub/sub connection per process; every channel
this process listens to is multiplexed on it, and one reader task hands each message to
its local handlers (which never block: they render once and queue to local sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import defaultdict

import redis.asyncio as aioredis

from app.bus import BusError, Handler

log = logging.getLogger("mailflow.bus")
SUBSCRIBE_SECONDS = 5.0  # Redis confirms a SUBSCRIBE within a round trip, or not at all

# hset_checked in one step: Redis runs a script with no other command in between, so
# two workers can never both see "4 of 5" and both add (see app/bus/__init__.py).
# KEYS: hash, gate hash. ARGV: field, value, ttl ms, cap (0: none), gate field ("": no
# gate), required gate value.
CHECKED_ADD = """
if ARGV[5] ~= '' then
  local held = redis.call('HGET', KEYS[2], ARGV[5])
  if held and held ~= ARGV[6] then return 'shut:' .. held end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'exists' end
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('HLEN', KEYS[1]) >= cap then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 'ok'
"""


class _RedisSubscription:
    def __init__(self, bus: RedisBus, channel: str, handler: Handler) -> None:
        self.bus, self.channel, self.handler = bus, channel, handler

    async def close(self) -> None:
        await self.bus._unsubscribe(self)


class RedisBus:
    name = "redis"

    def __init__(self, url: str, subscribe_seconds: float = SUBSCRIBE_SECONDS) -> None:
        self.url = url
        self.subscribe_seconds = subscribe_seconds
        self.redis = aioredis.Redis.from_url(url)
        # Subscribe confirmations are read too: `subscribe` returns only once Redis has the
        # subscription (see there).
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=False)
        self._handlers: dict[str, list[_RedisSubscription]] = defaultdict(list)
        self._ready: dict[str, asyncio.Future[None]] = {}  # channel -> Redis confirmed it
        # SUBSCRIBEs sent per channel whose confirmation has not come back: Redis answers
        # in order, so the channel is ready at the confirmation of the last one sent (after
        # a failed subscribe, its SUBSCRIBE may still be confirmed first).
        self._unconfirmed: dict[str, int] = defaultdict(int)
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._checked_add = self.redis.register_script(CHECKED_ADD)  # EVALSHA, loaded once

    async def start(self) -> None:
        await self.redis.ping()  # a wrong URL fails at start, not at the first class

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        await self.redis.aclose()

    async def publish(self, channel: str, data: bytes) -> None:
        await self.redis.publish(channel, data)

    async def subscribe(self, channel: str, handler: Handler) -> _RedisSubscription:
        """Returns once Redis has the subscription: every message published from then on
        (by any worker) reaches `handler`. SUBSCRIBE goes on its own connection, so having
        sent it is not enough: a state read on the command connection just after could be
        answered first, and a change published in between would be lost (a room socket
        subscribes, then reads the room for its sync)."""
        sub = _RedisSubscription(self, channel, handler)
        async with self._lock:
            first = channel not in self._handlers or not self._handlers[channel]
            self._handlers[channel].append(sub)
            if first:
                self._ready[channel] = asyncio.get_running_loop().create_future()
            ready = self._ready.get(channel)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read())
            try:
                if first:
                    self._unconfirmed[channel] += 1
                    await self._pubsub.subscribe(channel)
            except BaseException:
                if first:  # taken as not sent; a late confirmation only counts down to 0
                    self._unconfirmed[channel] -= 1
                self._forget(sub)
                raise
        if ready is not None:
            # Bounded: a caller (a room socket's hello) may hold a lock meanwhile, and a
            # Redis that never confirms must fail this one subscription, not hang the rest.
            try:
                await asyncio.wait_for(asyncio.shield(ready), self.subscribe_seconds)
            except BaseException as exc:
                async with self._lock:
                    left = self._forget(sub)
                if left:  # Redis may still act on the SUBSCRIBE sent: take it back
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)
                if isinstance(exc, TimeoutError):
                    raise BusError(
                        f"Redis did not confirm the subscription to {channel} within "
                        f"{self.subscribe_seconds:g} s"
                    ) from None
                raise
        return sub

    def _forget(self, sub: _RedisSubscription) -> bool:
        """Drop `sub` (a subscription that failed); True when its channel has no other
        handler left, so the next subscribe to it sends SUBSCRIBE afresh instead of
        waiting for a confirmation that will never come."""
        handlers = self._handlers.get(sub.channel)
        if handlers and sub in handlers:
            handlers.remove(sub)
        if handlers:
            return False
        self._handlers.pop(sub.channel, None)
        ready = self._ready.pop(sub.channel, None)
        if ready is not None and not ready.done():
            ready.cancel()
        return True

    async def _unsubscribe(self, sub: _RedisSubscription) -> None:
        async with self._lock:
            handlers = self._handlers.get(sub.channel)
            if not handlers or sub not in handlers:
                return
            handlers.remove(sub)
            if not handlers:
                del self._handlers[sub.channel]
                ready = self._ready.pop(sub.channel, None)
                if ready is not None and not ready.done():
                    ready.cancel()
                await self._pubsub.unsubscribe(sub.channel)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis pub/sub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = message.get("channel")
            if isinstance(channel, bytes):
                channel = channel.decode()
            if message.get("type") == "subscribe":
                left = self._unconfirmed[channel] = max(0, self._unconfirmed[channel] - 1)
                ready = self._ready.get(channel)
                if not left and ready is not None and not ready.done():
                    ready.set_result(None)
                continue
            if message.get("type") != "message":
                continue
            for sub in list(self._handlers.get(channel, ())):
                try:
                    result = sub.handler(message["data"])
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("bus handler failed on %s", channel)

    # -- key/value ------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        return await self.redis.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.redis.set(key, value, px=int(ttl * 1000))

    async def set_new(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(await self.redis.set(key, value, px=int(ttl * 1000), nx=True))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*keys)

    async def touch(self, ttl: float, *keys: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def hset_new(self, key: str, field: str, value: bytes, ttl: float) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, field, value)
            pipe.pexpire(key, int(ttl * 1000))
            added, _ = await pipe.execute()
        return bool(added)

    async def hset(self, key: str, field: str, value: bytes, ttl: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, value)
            pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def hset_all(self, key: str, mapping: dict[str, bytes], ttl: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def hset_checked(
        self, key: str, field: str, value: bytes, ttl: float, *, cap: int = 0,
        gate: tuple[str, str, str] | None = None,
    ) -> str:
        gate_key, gate_field, required = gate if gate is not None else (key, "", "")
        result = await self._checked_add(
            keys=[key, gate_key],
            args=[field, value, int(ttl * 1000), cap, gate_field, required],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self.redis.hget(key, field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        raw = await self.redis.hgetall(key)
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}

    async def hlen(self, key: str) -> int:
        return int(await self.redis.hlen(key))

    def sweep(self) -> int:
        return 0  # Redis expires keys itself

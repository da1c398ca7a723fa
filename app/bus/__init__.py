"""The bus: publish/subscribe plus a small key/value store, for state shared by web workers.

One interface (`Bus`), two engines:
- `MemoryBus` (the embedded default): one process, everything in dicts;
- `RedisBus` (MAILFLOW_REDIS_URL set): redis-py asyncio, so several web processes share
  room state and every published message reaches every process.

Values are bytes; keys expire (`ttl` seconds) so nothing outlives its room.

`hset_checked` is the one check-then-add that must hold across workers (a room's cap,
its lock, one answer per student): it checks and adds in ONE step (a Lua script on
Redis, a call with no await inside on the memory bus), so no other worker's add can
slip in between. It answers "ok" (added), "exists" (the field was already there;
nothing changed), "full" (the hash already holds `cap` fields), or "shut:<value>"
(the gate hash's field holds another value than the one required). A gate
(key, field, required) whose field is absent does not refuse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

Handler = Callable[[bytes], Awaitable[None] | None]


class BusError(RuntimeError):
    """The bus could not do what was asked (Redis unreachable, a subscription it never
    confirmed); nothing was left half done."""


class Subscription(Protocol):
    async def close(self) -> None: ...


class Bus(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    # -- publish / subscribe --------------------------------------------------------
    async def publish(self, channel: str, data: bytes) -> None: ...
    async def subscribe(self, channel: str, handler: Handler) -> Subscription: ...

    # -- key/value (strings and hashes) ---------------------------------------------
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def set_new(self, key: str, value: bytes, ttl: float) -> bool: ...
    async def delete(self, *keys: str) -> None: ...
    async def touch(self, ttl: float, *keys: str) -> None: ...
    async def hset_new(self, key: str, field: str, value: bytes, ttl: float) -> bool: ...
    async def hset(self, key: str, field: str, value: bytes, ttl: float) -> None: ...
    async def hset_all(self, key: str, mapping: dict[str, bytes], ttl: float) -> None: ...
    async def hset_checked(
        self, key: str, field: str, value: bytes, ttl: float, *, cap: int = 0,
        gate: tuple[str, str, str] | None = None,
    ) -> str: ...
    async def hget(self, key: str, field: str) -> bytes | None: ...
    async def hgetall(self, key: str) -> dict[str, bytes]: ...
    async def hlen(self, key: str) -> int: ...


def make_bus(redis_url: str) -> Bus:
    if redis_url:
        from app.bus.redis import RedisBus

        return RedisBus(redis_url)
    from app.bus.memory import MemoryBus

    return MemoryBus()

"""The in-memory bus: one process, dicts and direct calls (the embedded default)."""

from __future__ import annotations

import inspect
import logging
import time
from collections import defaultdict

from app.bus import Handler

log = logging.getLogger("mailflow.bus")


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, channel: str, handler: Handler) -> None:
        self.bus, self.channel, self.handler = bus, channel, handler

    async def close(self) -> None:
        handlers = self.bus._handlers.get(self.channel)
        if handlers and self in handlers:
            handlers.remove(self)
            if not handlers:
                del self.bus._handlers[self.channel]


class MemoryBus:
    name = "memory"

    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self._values: dict[str, bytes | dict[str, bytes]] = {}
        self._expires: dict[str, float] = {}
        self._handlers: dict[str, list[_MemorySubscription]] = defaultdict(list)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    async def publish(self, channel: str, data: bytes) -> None:
        for sub in list(self._handlers.get(channel, ())):
            try:
                result = sub.handler(data)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one broken subscriber must not stop the others
                log.exception("bus handler failed on %s", channel)

    async def subscribe(self, channel: str, handler: Handler) -> _MemorySubscription:
        sub = _MemorySubscription(self, channel, handler)
        self._handlers[channel].append(sub)
        return sub

    # -- key/value ------------------------------------------------------------------
    def _live(self, key: str) -> bytes | dict[str, bytes] | None:
        expires = self._expires.get(key)
        if expires is not None and expires <= self.clock():
            self._values.pop(key, None)
            self._expires.pop(key, None)
            return None
        return self._values.get(key)

    def _hash(self, key: str, ttl: float) -> dict[str, bytes]:
        value = self._live(key)
        if not isinstance(value, dict):
            value = {}
            self._values[key] = value
        self._expires[key] = self.clock() + ttl
        return value

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = value
        self._expires[key] = self.clock() + ttl

    async def set_new(self, key: str, value: bytes, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._values.pop(key, None)
            self._expires.pop(key, None)

    async def touch(self, ttl: float, *keys: str) -> None:
        until = self.clock() + ttl
        for key in keys:
            if self._live(key) is not None:
                self._expires[key] = until

    async def hset_new(self, key: str, field: str, value: bytes, ttl: float) -> bool:
        table = self._hash(key, ttl)
        if field in table:
            return False
        table[field] = value
        return True

    async def hset(self, key: str, field: str, value: bytes, ttl: float) -> None:
        self._hash(key, ttl)[field] = value

    async def hset_all(self, key: str, mapping: dict[str, bytes], ttl: float) -> None:
        self._hash(key, ttl).update(mapping)

    async def hset_checked(
        self, key: str, field: str, value: bytes, ttl: float, *, cap: int = 0,
        gate: tuple[str, str, str] | None = None,
    ) -> str:
        # No await from the first check to the add: atomic in this (the only) process.
        if gate is not None:
            gate_key, gate_field, required = gate
            table = self._live(gate_key)
            held = table.get(gate_field) if isinstance(table, dict) else None
            if held is not None and held != required.encode():
                return "shut:" + held.decode()
        value_now = self._live(key)
        current = value_now if isinstance(value_now, dict) else {}
        if field in current:
            return "exists"
        if cap and len(current) >= cap:
            return "full"
        self._hash(key, ttl)[field] = value
        return "ok"

    async def hget(self, key: str, field: str) -> bytes | None:
        value = self._live(key)
        return value.get(field) if isinstance(value, dict) else None

    async def hgetall(self, key: str) -> dict[str, bytes]:
        value = self._live(key)
        return dict(value) if isinstance(value, dict) else {}

    async def hlen(self, key: str) -> int:
        value = self._live(key)
        return len(value) if isinstance(value, dict) else 0

    def sweep(self) -> int:
        """Drops every expired key now (lookups drop them lazily too); returns how many."""
        now = self.clock()
        gone = [k for k, t in self._expires.items() if t <= now]
        for key in gone:
            self._values.pop(key, None)
            self._expires.pop(key, None)
        return len(gone)

    def __len__(self) -> int:
        return len(self._values)

"""A scripted room client for the tests and the benchmark: real HTTP (httpx) for the
pages, a real websocket (websockets) for the room, cookies as a browser keeps them."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CODE = re.compile(r'data-room-code="([A-Z2-9]{6})"')


def create_room(base: str, slug: str = "basic-pop3", lang: str = "ja") -> tuple[str, httpx.Client]:
    """POST /classroom as the form does; returns the code and the teacher's HTTP client."""
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=60)
    page = client.post("/classroom", data={"scenario": slug}, params={"lang": lang})
    page.raise_for_status()
    match = CODE.search(page.text)
    assert match, page.text[:500]
    return match.group(1), client


def join_room(base: str, code: str, nick: str = "", count_me: bool = False) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=60)
    data = {"nick": nick}
    if count_me:
        data["count_me"] = "1"
    page = client.post(f"/r/{code}", data=data)
    page.raise_for_status()
    assert "room-student" in page.text, page.text[:500]
    return client


def cookie_header(client: httpx.Client) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


class RoomSocket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, base: str, client: httpx.Client, code: str, role: str,
                   lang: str = "ja", origin: str | None = None) -> RoomSocket:
        url = base.replace("http://", "ws://") + "/ws/room"
        headers = {"Cookie": cookie_header(client), "Origin": origin or base}
        ws = await connect(url, additional_headers=headers, max_size=2**22)
        sock = cls(ws)
        await sock.send(type="hello", code=code, role=role, lang=lang)
        return sock

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        return json.loads(await self.ws.recv())

    async def until(self, kind: str) -> dict[str, Any]:
        """The next message of this type (the ones before it are skipped)."""
        while True:
            msg = await self.recv()
            if msg["type"] == kind:
                return msg

    async def close(self) -> None:
        await self.ws.close()

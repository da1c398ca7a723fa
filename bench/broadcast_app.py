"""The baseline for bench_lab_fanout and bench_rooms: a bare Starlette websocket broadcast.

Clients connect to /ws. Each frame is sent, as given, to every client in turn: the least
any live view or room can do. Two ways in, one per benchmark:
- POST /broadcast with a JSON list of text frames (the lab live view's events);
- a text frame sent to /ws/teacher (a teacher's step in a room).
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

clients: set[WebSocket] = set()


async def send_to_all(frame: str) -> None:
    for ws in list(clients):
        await ws.send_text(frame)


async def client(ws: WebSocket) -> None:
    await ws.accept()
    clients.add(ws)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(ws)


async def broadcast(request: Request) -> PlainTextResponse:
    for frame in json.loads(await request.body()):
        await send_to_all(frame)
    return PlainTextResponse(str(len(clients)))


async def teacher(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await send_to_all(await ws.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[
        WebSocketRoute("/ws", client),
        WebSocketRoute("/ws/teacher", teacher),
        Route("/broadcast", broadcast, methods=["POST"]),
    ]
)

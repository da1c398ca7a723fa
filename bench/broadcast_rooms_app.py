"""The baseline for bench_rooms: a bare Starlette broadcast. Clients connect to /ws; a
text frame sent to /ws/teacher is sent to every client as it is, one after another."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

clients: set[WebSocket] = set()


async def student(ws: WebSocket) -> None:
    await ws.accept()
    clients.add(ws)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(ws)


async def teacher(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            payload = await ws.receive_text()
            for client in list(clients):
                await client.send_text(payload)
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws", student), WebSocketRoute("/ws/teacher", teacher)])

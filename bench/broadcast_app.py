"""The baseline for bench_lab_fanout: a bare Starlette websocket broadcast.

Viewers connect to /ws; POST /broadcast with a JSON list of text frames sends each
frame, as given, to every viewer in turn: the least any live view can do.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

viewers: set[WebSocket] = set()


async def viewer(ws: WebSocket) -> None:
    await ws.accept()
    viewers.add(ws)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        viewers.discard(ws)


async def broadcast(request: Request) -> PlainTextResponse:
    frames = json.loads(await request.body())
    for frame in frames:
        for ws in list(viewers):
            await ws.send_text(frame)
    return PlainTextResponse(str(len(viewers)))


app = Starlette(
    routes=[WebSocketRoute("/ws", viewer), Route("/broadcast", broadcast, methods=["POST"])]
)

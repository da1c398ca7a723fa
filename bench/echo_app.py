"""The baseline for bench_flow: a bare Starlette websocket that echoes each message."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws", echo)])


if __name__ == "__main__":
    # Served with the app's own uvicorn settings (app/web/serving.py), so the baseline
    # differs from the app only by the app's work: `python -m bench.echo_app PORT`.
    import sys

    from app.web.serving import serve

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

"""The app's uvicorn settings (app/web/serving.py) on a real server over loopback: what
it logs at INFO, and that the websocket is served with the C parser and loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from waiting import wait_until_async
from websockets.asyncio.client import connect

from app.web.serving import uvicorn_config


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(await ws.receive_text())
    await ws.close()


async def page(request: object) -> PlainTextResponse:
    return PlainTextResponse(type(asyncio.get_running_loop()).__module__)


@pytest.fixture
def served() -> Iterator[tuple[str, Records, uvicorn.Server]]:
    app = Starlette(routes=[Route("/", page), WebSocketRoute("/ws", echo)])
    config = uvicorn_config(app, host="127.0.0.1", port=0)  # the product's log level
    records = Records()
    # Not on uvicorn.access: uvicorn writes access lines only if that logger has handlers.
    loggers = [logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(records)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # set by the server once it listens
        assert thread.is_alive()
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}", records, server
    server.should_exit = True
    thread.join(timeout=10)
    for logger in loggers:
        logger.removeHandler(records)


async def test_no_log_line_per_request_or_websocket_but_startup_is_logged(
    served: tuple[str, Records, uvicorn.Server],
) -> None:
    where, records, server = served
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"http://{where}/")).status_code == 200
    async with connect(f"ws://{where}/ws") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    # The server logs a connection's end (if it does) when it sees it, which may be after
    # the client is done: wait until it has no connection and no task left.
    state = server.server_state
    await wait_until_async(
        lambda: not state.connections and not state.tasks, "the server to see both clients go"
    )
    lines = "\n".join(records.lines)
    assert "Application startup complete" in lines  # INFO lines do reach the handler
    # Old settings: "connection open", "[accepted]" and "connection closed".
    for per_connection in ("connection open", "[accepted]", "closed"):
        assert per_connection not in lines
    # HTTP access lines: uvicorn writes them iff its access logger has handlers, which
    # `access_log=False` removes; pytest's log capture adds its own to every logger, so
    # under pytest that can only be read from the config.
    assert uvicorn_config(None).access_log is False


async def test_served_on_uvloop(served: tuple[str, Records, uvicorn.Server]) -> None:
    where, _, _ = served
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"http://{where}/")).text.startswith("uvloop")

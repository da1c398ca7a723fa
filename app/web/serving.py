"""The one place uvicorn is configured: `python -m app`, each of the web workers and the
tests' live servers all build their server here, so what is measured (bench/) and tested
is what is served. Why each setting: docs/architecture.md, "Serving: uvicorn's settings".
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

WS_MAX_SIZE = 64 * 1024  # the largest incoming frame; our messages are a few hundred bytes

SETTINGS: dict[str, Any] = {
    # Sends never wait: one room fan-out is one loop (app/rooms/hub.py).
    "ws": "websockets-sansio",
    "ws_max_size": WS_MAX_SIZE,
    # Compressing every frame per connection (zlib state per socket, CPU per message) buys
    # little on loopback and a LAN for frames of a few KB, and costs memory per socket.
    "ws_per_message_deflate": False,
    # Startup, shutdown and errors are logged; a line per request is not (it cost the web
    # process CPU on every page and websocket and said nothing /healthz does not).
    "access_log": False,
    "log_level": "info",
}


def uvicorn_config(app: Any, **overrides: Any) -> uvicorn.Config:
    """uvicorn's Config for `app` with our settings; `overrides` are where to listen
    (host, port) and, for tests, a quieter log level."""
    return uvicorn.Config(app, **{**SETTINGS, **overrides})


def serve(app: Any, sockets: list[socket.socket] | None = None, **overrides: Any) -> None:
    """Run `app` until stopped, on `sockets` if given (the workers share one port)."""
    uvicorn.Server(uvicorn_config(app, **overrides)).run(sockets=sockets)

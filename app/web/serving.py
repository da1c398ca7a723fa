"""The one place uvicorn is configured: `python -m app`, each of the web workers and the
tests' live servers all build their server here, so what is measured (bench/) and tested
is what is served. Why each setting: docs/architecture.md, "Serving: uvicorn's settings".
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import uvicorn

WS_MAX_SIZE = 64 * 1024  # the largest incoming frame; our messages are a few hundred bytes

SETTINGS: dict[str, Any] = {
    # C parsers and loop (uvicorn[standard]'s choices): a page or a websocket handshake
    # costs the web process less CPU than with h11 and asyncio's pure-Python loop.
    "http": "httptools",
    "loop": "asyncio" if sys.platform == "win32" else "uvloop",  # no uvloop on Windows
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


class NoWebSocketAccessLines(logging.Filter):
    """uvicorn logs every websocket at INFO on its error logger, whatever `access_log`
    says: "connection open", "[accepted]" and "connection closed" (the last two from the
    websockets library it hands that logger to). They are the per-connection lines that
    `access_log` turns off for HTTP; refused handshakes (403) and errors still show."""

    PER_CONNECTION = frozenset({"connection open", "connection closed"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        msg = str(record.msg)
        return not (msg in self.PER_CONNECTION or msg.endswith("[accepted]"))


def uvicorn_config(app: Any, **overrides: Any) -> uvicorn.Config:
    """uvicorn's Config for `app` with our settings; `overrides` are where to listen
    (host, port) and, for tests, a quieter log level."""
    config = uvicorn.Config(app, **{**SETTINGS, **overrides})  # sets up uvicorn's loggers
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, NoWebSocketAccessLines) for f in error_log.filters):
        error_log.addFilter(NoWebSocketAccessLines())
    return config


def serve(app: Any, sockets: list[socket.socket] | None = None, **overrides: Any) -> None:
    """Run `app` until stopped, on `sockets` if given (the workers share one port)."""
    uvicorn.Server(uvicorn_config(app, **overrides)).run(sockets=sockets)

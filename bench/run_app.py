"""`python -m bench.run_app`: `python -m app`, with the websocket compression the benchmark
compares set from BENCH_WS_DEFLATE ("1" on, "0" off; unset: the product's own setting).

uvicorn's Config is wrapped at import, so it also holds in the spawned web workers:
spawn imports this module (the parent's __main__) in each child before the worker runs.
Nothing else of the server changes.
"""

from __future__ import annotations

import os

import uvicorn

_DEFLATE = os.environ.get("BENCH_WS_DEFLATE")
_config_init = uvicorn.Config.__init__


def _init(self, app, *args, **kwargs):  # type: ignore[no-untyped-def]
    if _DEFLATE is not None:
        kwargs["ws_per_message_deflate"] = _DEFLATE == "1"
    _config_init(self, app, *args, **kwargs)


uvicorn.Config.__init__ = _init  # type: ignore[method-assign]

if __name__ == "__main__":
    from app.__main__ import main

    raise SystemExit(main())

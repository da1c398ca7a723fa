"""`python -m app`: serve MailFlow Lab with the settings from the environment."""

from __future__ import annotations

import sys

import uvicorn

from app.config import ConfigError, Settings
from app.web.app import create_app


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"mailflow: {exc}", file=sys.stderr)
        return 2
    print(f"MailFlow Lab on http://{settings.host}:{settings.port}  (data: {settings.data_dir})")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        ws_max_size=64 * 1024,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

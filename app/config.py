"""Settings, read once from the environment (MAILFLOW_*), with embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A setting that cannot work; the message names the variable to change."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var")
    lab: bool = True
    lab_offset: int = 2000
    public: bool = False
    database_url: str = ""
    session_ttl: float = 2 * 3600.0  # idle browser sessions are forgotten after this
    max_sessions: int = 5000

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            host=os.environ.get("MAILFLOW_HOST", "127.0.0.1"),
            port=_int("MAILFLOW_PORT", 8000),
            data_dir=Path(os.environ.get("MAILFLOW_DATA_DIR", "var")),
            lab=_flag("MAILFLOW_LAB", True),
            lab_offset=_int("MAILFLOW_LAB_OFFSET", 2000),
            public=_flag("MAILFLOW_PUBLIC", False),
            database_url=os.environ.get("MAILFLOW_DATABASE_URL", ""),
        )

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")

    def check(self) -> None:
        """Refuse settings that would expose the lab's well-known passwords by accident."""
        if not self.is_loopback and not self.public:
            raise ConfigError(
                f"MAILFLOW_HOST={self.host} would serve beyond this machine. The lab accounts "
                "have well-known passwords (alice-pass, bob-pass): set MAILFLOW_PUBLIC=1 "
                "if you really want that, or keep MAILFLOW_HOST=127.0.0.1."
            )
        if not 0 <= self.lab_offset <= 60000:
            raise ConfigError(f"MAILFLOW_LAB_OFFSET={self.lab_offset} must be 0..60000")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mailflow.db').resolve()}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

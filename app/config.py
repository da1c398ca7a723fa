"""Settings, read once from the environment (MAILFLOW_*), with embedded defaults."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


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
    public_url: str = ""  # e.g. https://mail.school.example behind a reverse proxy
    teacher_password: str = ""  # empty: teacher-only pages are off in public mode
    redis_url: str = ""  # set: rooms and the lab live view share state through Redis
    web_workers: int = 1  # web processes behind the one port (more than 1 needs Redis)
    room_max_students: int = 500
    room_join_rate: int = 60  # joins (and room creations) per minute per client address
    room_ttl: float = 3 * 3600.0  # a room without activity is deleted after this
    lab_host: str = ""  # where the lab's mail listeners listen; empty: see lab_bind_host
    record_workers: int = 1  # worker processes that run scenarios (2 cores: web + 1)
    record_pool: int = 2  # recordings kept ready per (scenario, language); 0: none ahead
    record_idle_stop: float = 120.0  # seconds without a run before the worker exits; 0: never

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
            public_url=os.environ.get("MAILFLOW_PUBLIC_URL", "").strip(),
            teacher_password=os.environ.get("MAILFLOW_TEACHER_PASSWORD", ""),
            redis_url=os.environ.get("MAILFLOW_REDIS_URL", "").strip(),
            web_workers=_int("MAILFLOW_WEB_WORKERS", 1),
            room_max_students=_int("MAILFLOW_ROOM_MAX_STUDENTS", 500),
            room_join_rate=_int("MAILFLOW_ROOM_JOIN_RATE", 60),
            lab_host=os.environ.get("MAILFLOW_LAB_HOST", "").strip(),
            record_workers=_int("MAILFLOW_RECORD_WORKERS", 1),
            record_pool=_int("MAILFLOW_RECORD_POOL", 2),
            record_idle_stop=float(_int("MAILFLOW_RECORD_IDLE", 120)),
        )

    @property
    def is_loopback(self) -> bool:
        # An address, not a prefix: "127.0.0.1.example" is a name anywhere on the Internet.
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def is_classroom_lan(self) -> bool:
        """MAILFLOW_HOST is this machine's address on a private network (a classroom's
        Wi-Fi): students' phones reach the web app, nothing beyond the LAN does."""
        try:
            address = ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return False
        return address.is_private and not (address.is_loopback or address.is_unspecified)

    @property
    def teacher_only(self) -> bool:
        """Teacher pages (the lab's viewer and reset, creating rooms) need the password."""
        return self.public or self.is_classroom_lan

    @property
    def lab_bind_host(self) -> str:
        """The lab's mail listeners: their accounts have well-known passwords, so on a
        classroom LAN they stay on loopback unless MAILFLOW_LAB_HOST opens them."""
        if self.lab_host:
            return self.lab_host
        if self.is_classroom_lan:
            return "127.0.0.1"
        return self.host

    @property
    def public_origin(self) -> str | None:
        """The origin of MAILFLOW_PUBLIC_URL (scheme://host:port), or None when unset."""
        from app.web.security import origin_of  # the one place origins are normalised

        return origin_of(self.public_url) if self.public_url else None

    def check(self) -> None:
        """Refuse settings that would expose the lab's well-known passwords by accident."""
        if not self.is_loopback and not self.public and not self.is_classroom_lan:
            raise ConfigError(
                f"MAILFLOW_HOST={self.host} would serve beyond this machine. The lab accounts "
                "have well-known passwords (alice-pass, bob-pass): set MAILFLOW_PUBLIC=1 "
                "if you really want that, use this machine's address on the classroom network "
                "(e.g. MAILFLOW_HOST=192.168.1.10), or keep MAILFLOW_HOST=127.0.0.1."
            )
        if self.public_url and (
            self.public_origin is None or urlsplit(self.public_url).path not in ("", "/")
        ):
            raise ConfigError(
                f"MAILFLOW_PUBLIC_URL={self.public_url!r} must be the address people open, "
                "scheme and host only, e.g. https://mail.school.example"
            )
        if self.web_workers < 1 or self.web_workers > 64:
            raise ConfigError(f"MAILFLOW_WEB_WORKERS={self.web_workers} must be 1..64")
        if self.web_workers > 1 and not self.redis_url:
            raise ConfigError(
                f"MAILFLOW_WEB_WORKERS={self.web_workers} needs MAILFLOW_REDIS_URL: rooms "
                "and the lab live view are shared between web workers through Redis"
            )
        if self.room_max_students < 1 or self.room_join_rate < 1:
            raise ConfigError("MAILFLOW_ROOM_MAX_STUDENTS and MAILFLOW_ROOM_JOIN_RATE must be ≥ 1")
        if not 0 <= self.lab_offset <= 60000:
            raise ConfigError(f"MAILFLOW_LAB_OFFSET={self.lab_offset} must be 0..60000")
        if not 1 <= self.record_workers <= 16:
            raise ConfigError(f"MAILFLOW_RECORD_WORKERS={self.record_workers} must be 1..16")
        if not 0 <= self.record_pool <= 10:
            raise ConfigError(f"MAILFLOW_RECORD_POOL={self.record_pool} must be 0..10")
        if self.record_idle_stop < 0:
            raise ConfigError(f"MAILFLOW_RECORD_IDLE={self.record_idle_stop:g} must be ≥ 0")
        if self.database_url:
            from app.study.dburl import DatabaseUrlError, parse  # small: re and urllib

            try:
                parse(self.database_url)
            except DatabaseUrlError as exc:
                raise ConfigError(f"MAILFLOW_DATABASE_URL: {exc}") from None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mailflow.db').resolve()}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

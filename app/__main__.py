"""`python -m app`: serve MailFlow Lab with the settings from the environment.

The web app is imported inside `main()`, not at the top: a new data directory's
preparation (app/prepare.py) and the lab process (app/lab/control.py, `prestart`) are
started first and import while the web stack imports.
"""

from __future__ import annotations

import errno
import secrets
import socket
import sys
import time
from dataclasses import replace

from app.config import ConfigError, Settings
from app.topology import LAB_PUBLIC as SERVICES
from app.topology import lab_ports


def busy_port(settings: Settings, patience: float = 10.0) -> str | None:
    """Name the first port we cannot bind, before anything starts.

    A lab port still held is given a few seconds: the lab process of a web process
    that was just killed closes its listeners as soon as it sees its stdin close."""
    deadline = time.monotonic() + patience
    while (problem := _first_busy(settings)) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    return problem


def _first_busy(settings: Settings) -> str | None:
    wanted = [("web app", settings.port, "MAILFLOW_PORT")]
    if settings.lab:
        ports = lab_ports(settings.lab_offset)
        wanted += [
            (
                f"lab {s.name} (standard {s.standard_port})",
                ports[s.name],
                "MAILFLOW_LAB_OFFSET (or MAILFLOW_LAB=0)",
            )
            for s in SERVICES
        ]
    for what, port, variable in wanted:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                host = settings.host if what == "web app" else settings.lab_bind_host
                sock.bind((host, port))
            except OSError as exc:
                why = "is already in use" if exc.errno == errno.EADDRINUSE else str(exc)
                return f"port {port} for the {what} {why}: change {variable}"
    return None


def classroom_password(settings: Settings) -> tuple[Settings, str]:
    """On a classroom LAN without MAILFLOW_TEACHER_PASSWORD: one for this run, printed
    here for the teacher (who sits at this console) and nowhere else."""
    if not settings.is_classroom_lan or settings.teacher_password:
        return settings, ""
    password = secrets.token_urlsafe(9)
    note = (
        f"mailflow: teacher password for this run: {password}\n"
        f"mailflow: start a class at http://{settings.host}:{settings.port}/classroom "
        "(set MAILFLOW_TEACHER_PASSWORD to choose your own)"
    )
    return replace(settings, teacher_password=password), note


def main() -> int:
    try:
        settings = Settings.from_env()
        settings.check()
    except ConfigError as exc:
        print(f"mailflow: {exc}", file=sys.stderr)
        return 2
    settings, note = classroom_password(settings)
    if note:
        print(note, flush=True)
    problem = busy_port(settings)
    if problem:
        print(f"mailflow: {problem}", file=sys.stderr)
        return 2
    # A new data directory's certificates and database are made in a process of their
    # own while this one imports the web stack (app/prepare.py).
    from app import prepare

    preparing = prepare.start(settings)
    if settings.lab and settings.web_workers == 1:
        # The lab process imports its engines on the other core while this one imports
        # the web stack; the web's start-up adopts it and sends its configuration.
        from app.lab import control

        control.prestart()
    from app.web.app import create_app  # the heavy import, overlapped with the above
    from app.web.serving import serve
    from app.web.workers import supervise

    if preparing is not None and preparing.wait() != 0:
        print("mailflow: preparing the data directory failed (see above)", file=sys.stderr)
        return 1
    if settings.public:
        print(
            "mailflow: WARNING: serving beyond loopback; the lab accounts use the default "
            "passwords alice-pass and bob-pass unless changed in "
            f"{settings.data_dir / 'lab' / 'accounts.toml'}",
            file=sys.stderr,
        )
    print(f"MailFlow Lab on http://{settings.host}:{settings.port}  (data: {settings.data_dir})")
    if settings.lab:
        ports = lab_ports(settings.lab_offset)
        print("Lab listeners: " + ", ".join(f"{s.name} {ports[s.name]}" for s in SERVICES))
    if settings.web_workers > 1:
        return supervise(settings)
    serve(create_app(settings), host=settings.host, port=settings.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

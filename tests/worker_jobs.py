"""Jobs the tests send to the recording worker (importable there by this module's name)."""

from __future__ import annotations


class PickyError(Exception):
    """Pickles (as its args) but cannot be rebuilt: __init__ wants a second argument."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} at {where}")


def fail_picky() -> None:
    raise PickyError("disk full", "/var/mail")


def hang(started: str) -> None:
    """A job that never ends: say it has begun (a file), then block."""
    import threading
    from pathlib import Path

    Path(started).touch()
    threading.Event().wait()

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


def fail_picky_after_loading_cryptography() -> None:
    """A job that loads a HEAVY library (the worker retires after it) and then fails
    with an exception the web cannot rebuild."""
    import cryptography.x509  # noqa: F401

    raise PickyError("no key", "/var/lab")

"""Record every file-system call made on the event loop's thread while a test watches.

Audit events (PEP 578) of the calls that touch the file system: os.stat has none; the rest
of what a Maildir server does (open, list, rename, unlink, mkdir, rmtree) has. A test calls
`watch_loop()` in the loop's thread, drives a real client from another thread, and asserts
`stop_watching() == []`.
"""

from __future__ import annotations

import threading

# Audit events (PEP 578) of the calls that touch the file system. os.stat has none; the
# rest of what a Maildir server does (open, list, rename, unlink, mkdir, rmtree) has.
DISK_EVENTS = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "os.rename",  # os.replace too
        "os.remove",
        "os.rmdir",
        "os.mkdir",
        "os.utime",
        "os.truncate",
        "shutil.rmtree",
    }
)
_on_loop: list[str] = []
_watching: list[int] = []  # the event loop's thread while a test watches it
_hooked: list[bool] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _watching and event in DISK_EVENTS and threading.get_ident() == _watching[0]:
        _on_loop.append(f"{event} {args[0]!r}")


def watch_loop() -> None:
    """From now on, record every file-system call made in this (the loop's) thread."""
    if not _hooked:
        import sys

        sys.addaudithook(_audit)  # cannot be removed: it records only while watching
        _hooked.append(True)
    _on_loop.clear()
    _watching[:] = [threading.get_ident()]


def stop_watching() -> list[str]:
    _watching.clear()
    return list(_on_loop)

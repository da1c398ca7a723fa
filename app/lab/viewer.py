"""The mailbox viewer's reads and the reset, answered by the lab process.

The lab process owns the Maildirs: it assigns UIDs, keeps the listings' caches and
the IMAP sessions that must hear of a change. So the web asks it (app/lab/control.py)
rather than reading or changing the Maildir itself; the file reads run in a worker
thread, never on the event loop that serves the mail clients.
"""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from app.lab.world import LabWorld

PREVIEW_LIMIT = 256 * 1024  # a huge message is shown cut, never loaded whole into a page


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(PREVIEW_LIMIT)


def _summaries(listed: list[tuple[Any, Path | None]]) -> list[dict[str, object]]:
    out = []
    for m, path in listed:
        head = _head(path) if path is not None else b""
        msg = message_from_bytes(head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=policy.default)
        try:
            date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
        except (TypeError, ValueError):
            date = None
        out.append(
            {
                "uid": m.uid,
                "from": str(msg["From"] or ""),
                "subject": str(msg["Subject"] or ""),
                "date": date,
                "size": m.size,
                "flags": sorted(m.flags),
                "file": m.relpath,
            }
        )
    return out


def _known(lab: LabWorld, account: str, folder: str) -> bool:
    return lab.accounts.exists(account) and folder in lab.store.folder_names(account)


async def mailbox(lab: LabWorld, account: str, folder: str) -> dict[str, Any] | None:
    """A folder's messages, newest first; None when there is no such folder."""
    return await asyncio.to_thread(_mailbox, lab, account, folder)  # listings: off the loop


def _mailbox(lab: LabWorld, account: str, folder: str) -> dict[str, Any] | None:
    if not _known(lab, account, folder):
        return None
    box = lab.store.folder(account, folder)
    messages = list(reversed(box.messages()))
    files = box.files()
    return {
        "folders": lab.store.folder_names(account),
        "accounts": lab.accounts.users,
        "messages": _summaries([(m, files.get(m.key)) for m in messages]),
    }


def _read_cut(path: Path) -> tuple[bytes, int]:
    with path.open("rb") as fh:
        return fh.read(PREVIEW_LIMIT), path.stat().st_size


async def message(lab: LabWorld, account: str, folder: str, uid: int) -> dict[str, Any] | None:
    """One message's text (cut at PREVIEW_LIMIT); None when there is no such message."""
    return await asyncio.to_thread(_message, lab, account, folder, uid)  # off the loop


def _message(lab: LabWorld, account: str, folder: str, uid: int) -> dict[str, Any] | None:
    if not _known(lab, account, folder):
        return None
    box = lab.store.folder(account, folder)
    found = next((m for m in box.messages() if m.uid == uid), None)
    path = box.files().get(found.key) if found is not None else None
    if found is None or path is None:
        return None
    try:
        raw, size = _read_cut(path)
    except FileNotFoundError:  # expunged meanwhile
        return None
    return {
        "uid": found.uid,
        "raw": raw.decode("utf-8", errors="replace"),
        "cut": size > PREVIEW_LIMIT,
        "size": size,
        "file": found.relpath,
    }

"""A mail queue on disk: one file per mail, a JSON envelope line and then the message.

Written with fsync before the server says 250, so a crash right after the reply
loses nothing (RFC 5321 §6.1: once accepted, the server is responsible for the mail).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from app.world.durable import COMMITS, write_durably


@dataclass(frozen=True, slots=True)
class QueuedMail:
    qid: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


def new_queue_id() -> str:
    return secrets.token_hex(5).upper()


def _entry(mail_from: str, rcpt_tos: list[str], data: bytes) -> bytes:
    envelope = json.dumps({"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}).encode()
    return envelope + b"\n" + data


class Spool:
    """One file per queued mail: a JSON envelope line, then the message bytes.

    One file means one fsync per mail; the rename into place makes it appear whole or
    not at all. Writing touches only unique names, so puts may run in worker threads.
    """

    SUFFIX = ".mail"

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, mail_from: str, rcpt_tos: list[str], data: bytes, qid: str | None = None) -> str:
        qid = qid or new_queue_id()
        write_durably(*self._paths(qid), _entry(mail_from, rcpt_tos, data))
        return qid

    async def put_async(self, mail_from: str, rcpt_tos: list[str], data: bytes, qid: str) -> None:
        """`put` through the process's group commit: the event loop goes on meanwhile."""
        await COMMITS.write(*self._paths(qid), _entry(mail_from, rcpt_tos, data))

    def _paths(self, qid: str) -> tuple[Path, Path]:
        # The temporary name is hidden: never listed as an entry.
        return self.dir / f".{qid}{self.SUFFIX}.tmp", self.dir / f"{qid}{self.SUFFIX}"

    def qids(self) -> list[str]:
        """Queued ids, oldest first, without reading any mail."""
        files = []
        for entry in os.scandir(self.dir):
            if entry.name.endswith(self.SUFFIX) and not entry.name.startswith("."):
                files.append((entry.stat().st_mtime, entry.name[: -len(self.SUFFIX)]))
        return [qid for _, qid in sorted(files)]

    def get(self, qid: str) -> QueuedMail | None:
        """One queued mail, or None when it was delivered and removed meanwhile."""
        try:
            raw = (self.dir / f"{qid}{self.SUFFIX}").read_bytes()
        except FileNotFoundError:
            return None
        head, _, data = raw.partition(b"\n")
        env = json.loads(head)
        return QueuedMail(qid, env["mail_from"], tuple(env["rcpt_tos"]), data)

    def entries(self) -> list[QueuedMail]:
        return [m for m in map(self.get, self.qids()) if m is not None]

    def remove(self, qid: str) -> None:
        (self.dir / f"{qid}{self.SUFFIX}").unlink(missing_ok=True)

    async def remove_async(self, qid: str) -> None:
        # An unlink can take longer than a whole SMTP reply; not on the event loop.
        await COMMITS.unlink(self.dir / f"{qid}{self.SUFFIX}")

    def __len__(self) -> int:
        return len(list(self.dir.glob(f"*{self.SUFFIX}")))

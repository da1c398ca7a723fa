"""A mail queue on disk: each entry is an envelope (JSON) beside the message (.eml).

Written with fsync before the server says 250, so a crash right after the reply
loses nothing (RFC 5321 §6.1: once accepted, the server is responsible for the mail).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class QueuedMail:
    qid: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


def new_queue_id() -> str:
    return secrets.token_hex(5).upper()


def _write_synced(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, mail_from: str, rcpt_tos: list[str], data: bytes, qid: str | None = None) -> str:
        qid = qid or new_queue_id()
        # Message first, envelope last: an entry counts once its envelope exists.
        _write_synced(self.dir / f"{qid}.eml", data)
        envelope = {"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}
        _write_synced(self.dir / f"{qid}.json", json.dumps(envelope).encode())
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return qid

    def entries(self) -> list[QueuedMail]:
        out = []
        for env_file in sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            qid = env_file.stem
            eml = self.dir / f"{qid}.eml"
            if not eml.exists():
                continue
            env = json.loads(env_file.read_text("utf-8"))
            out.append(QueuedMail(qid, env["mail_from"], tuple(env["rcpt_tos"]), eml.read_bytes()))
        return out

    def remove(self, qid: str) -> None:
        for suffix in (".json", ".eml"):
            (self.dir / f"{qid}{suffix}").unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(list(self.dir.glob("*.json")))

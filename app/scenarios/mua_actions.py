"""What a mail program or an onlooker does with a message it holds: decode Base64,
open S/MIME, read a PPAP pair off the path. Each result is a note computed from the
bytes that really travelled (the MUA's download, a server's queue), never typed in."""

from __future__ import annotations

import asyncio
import email
import re
from email.message import Message
from email.policy import default as default_policy
from typing import Any

from app.events import PANEL_FETCH, PANEL_RELAY, Tap
from app.notes import Line, note
from app.sandbox import Sandbox
from app.scenarios.context import RunContext

PATH_READER = "path-reader"
# "パスワード: x" or "The password for the ZIP file: x", as a person would write it.
_PASSWORD_LINE = re.compile(r"(?:パスワード|password)[^:：\n]*[:：]\s*(\S+)", re.IGNORECASE)


def _last_fetched(run: RunContext, actor: str) -> bytes:
    got = run.fetched.get(actor)
    if not got:
        raise ValueError(f"{actor} has not downloaded any message yet")
    return got[-1]


def _note(
    world: Sandbox, panel: int, actor: str, lines: list[Line], key: str, protocol: str
) -> None:
    text, detail = note(*lines)
    Tap(world.sink, panel, actor, actor, protocol, None).note(text, key, detail=detail)


def base64_walkthrough(encoded_line: str) -> list[Line]:
    """How the first 4 characters of a Base64 line come from 3 bytes (RFC 2045 §6.8)."""
    import base64

    chunk = encoded_line[:4]
    raw = base64.b64decode(chunk)
    bits = "".join(f"{b:08b}" for b in raw)
    sextets = [bits[i : i + 6] for i in range(0, 24, 6)]
    return [
        (
            "mime.bits",
            {"hex": " ".join(f"0x{b:02X}" for b in raw), "bits": " ".join(f"{b:08b}" for b in raw)},
        ),
        (
            "mime.sextets",
            {"sextets": " ".join(sextets), "values": " ".join(str(int(s, 2)) for s in sextets)},
        ),
        ("mime.chars", {"chars": " ".join(chunk)}),
    ]


async def mime_decode(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """The MUA decodes the first Base64 line of the downloaded attachment."""
    actor = params.get("actor", "mua-bob")
    msg = email.message_from_bytes(_last_fetched(run, actor), policy=default_policy)
    part = next(
        (p for p in msg.walk() if str(p.get("Content-Transfer-Encoding", "")).lower() == "base64"),
        None,
    )
    if part is None:
        raise ValueError("the downloaded message has no Base64 part")
    payload = part.get_payload(decode=False)
    lines = [line for line in str(payload).splitlines() if line]
    data = part.get_payload(decode=True) or b""
    name = part.get_filename() or part.get_content_type()
    summary = {
        "name": name,
        "size": len(data),
        "chars": sum(len(line) for line in lines),
        "lines": len(lines),
        "longest": max(len(line) for line in lines),
    }
    shown: list[Line] = [("mime.summary", summary), ("mime.line1", {"line": lines[0]})]
    _note(
        world,
        PANEL_FETCH,
        actor,
        shown + base64_walkthrough(lines[0]),
        "mime.base64.decode",
        "MIME",
    )


async def smime_open(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    from app.mua import smime  # a few MB, for a few scenarios: imported when used

    """Bob's MUA decrypts with his private key, then checks Alice's signature."""
    actor = params.get("actor", "mua-bob")
    user = params.get("user", "bob@b.example")
    raw = _last_fetched(run, actor)
    me = smime.identity(world.tls.directory, user)
    signed = smime.decrypt(raw, me)
    inner = email.message_from_bytes(signed, policy=default_policy)
    body = ""
    signer = ""
    for part in inner.walk():
        if part.get_content_type() == "text/plain" and not body:
            body = str(part.get_content()).strip()
        if part.get_content_type().endswith("pkcs7-signature"):
            der = part.get_payload(decode=True) or b""
            certs = smime.pkcs7.load_der_pkcs7_certificates(der)
            signer = ", ".join(c.subject.rfc4514_string() for c in certs)
    opened = {"user": user, "type": inner.get_content_type(), "body": body}
    _note(world, PANEL_FETCH, actor, [("smime.opened", opened)], "smime.decrypt", "S/MIME")
    verdict = await asyncio.to_thread(smime.verify, signed, world.tls.directory)
    lines: list[Line] = [
        ("smime.signer", {"signer": signer}),
        ("smime.verdict", {"verdict": verdict}),
    ]
    _note(world, PANEL_FETCH, actor, lines, "smime.verify", "S/MIME")


def _zip_and_password(messages: list[Message]) -> tuple[tuple[str, bytes] | None, str | None]:
    found_zip, password = None, None
    for msg in messages:
        for part in msg.walk():
            if part.get_content_type() == "application/zip":
                found_zip = (part.get_filename() or "attachment.zip", part.get_payload(decode=True))
            elif part.get_content_type() == "text/plain":
                match = _PASSWORD_LINE.search(str(part.get_content()))
                if match:
                    password = match.group(1)
    return found_zip, password


async def path_reader(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    from app.mua import attachments  # a few MB, for a few scenarios: imported when used

    """Someone who can read a server on the path (here the queue of mx.b.example,
    where both mails wait after the relay hop) takes the ZIP from one and the
    password from the other, and opens it."""
    queued = world.inbound.entries()
    messages = [email.message_from_bytes(e.data, policy=default_policy) for e in queued]
    subjects = " / ".join(str(m.get("Subject", "")) for m in messages)
    found_zip, password = _zip_and_password(messages)
    lines: list[Line] = [
        ("ppap.queue", {"count": len(queued), "host": "mx.b.example", "subjects": subjects})
    ]
    if found_zip and found_zip[1] is not None:
        lines.append(("ppap.zip", {"name": found_zip[0], "size": len(found_zip[1])}))
    if password:
        lines.append(("ppap.password", {"password": password}))
    if found_zip and found_zip[1] is not None and password:
        for name, text in attachments.open_zip(found_zip[1], password).items():
            lines.append(("ppap.unzipped", {"name": name, "text": text.strip()}))
    _note(world, PANEL_RELAY, PATH_READER, lines, "ppap.read", "ZIP")


async def attachment_name(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """The MUA decodes the downloaded attachment's file name (RFC 2231) and lays it
    out as it would on screen; the note shows the header as it travelled, the real
    name with its controls written out, and what the learner would see."""
    from app.mua.filenames import note_text, report

    actor = params.get("actor", "mua-bob")
    raw = _last_fetched(run, actor)
    msg = email.message_from_bytes(raw, policy=default_policy)
    part = next((p for p in msg.walk() if p.get_filename()), None)
    if part is None:
        raise ValueError("the downloaded message has no named attachment")
    header = next((str(v) for k, v in part.raw_items() if k.lower() == "content-disposition"), "")
    name_report = report(header.replace("\r\n", "\n"), str(part.get_filename()))
    key = "mua.attachment.name.rlo" if name_report.has_controls else "mua.attachment.name"
    # Written in the run's language by app/mua/filenames.py (the header is data).
    Tap(world.sink, PANEL_FETCH, actor, actor, "MIME", None).note(
        note_text(name_report, run.lang), key
    )

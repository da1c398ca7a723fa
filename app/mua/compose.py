"""How the sender's MUA turns a scenario's [mail] table into a message and an envelope.

The envelope (MAIL FROM, one RCPT TO per recipient) is To + Cc + Bcc; the header
has To and Cc only: a Bcc recipient is in the envelope and nowhere in the content
(RFC 5322 §3.6.3). Attachments are MIME parts in Base64 (RFC 2045 §6.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Composed:
    sender: str  # the envelope's MAIL FROM
    rcpts: list[str]  # the envelope's RCPT TOs
    data: bytes  # the message (header + body), CRLF line ends


def localized(value: Any, lang: str) -> str:
    return str(value.get(lang) or value.get("en")) if isinstance(value, dict) else str(value)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _body_part(mail: dict[str, Any], lang: str) -> EmailMessage:
    part = EmailMessage()
    body = localized(mail.get("body", "Hello."), lang)
    # 8bit keeps Japanese text readable on screen; the servers offer 8BITMIME.
    part.set_content(body + "\n", cte="8bit" if not body.isascii() else "7bit")
    return part


def _attach(msg: EmailMessage, mail: dict[str, Any], lang: str) -> None:
    # Imported here: pyzipper and cryptography cost every process that imports this
    # module several MB, and only a few scenarios attach, zip or encrypt.
    from app.mua import attachments

    att = mail.get("attachment")
    if att:
        kind = att.get("kind", "png")
        name = localized(att.get("name", "map.png"), lang)
        if kind == "png":
            data, maintype, subtype = attachments.tiny_png(), "image", "png"
        elif kind == "program":
            # A harmless stand-in for a program: the lesson is the name, not the payload.
            data, maintype, subtype = attachments.STAND_IN_PROGRAM, "application", "octet-stream"
        else:
            raise ValueError(f"unknown attachment kind {kind!r}")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    zipped = mail.get("zip")
    if zipped:
        files = {name: localized(text, lang) for name, text in zipped.get("files", {}).items()}
        data = attachments.encrypted_zip(files, str(zipped["password"]))
        name = localized(zipped.get("name", "files.zip"), lang)
        msg.add_attachment(data, maintype="application", subtype="zip", filename=name)


def compose(
    mail: dict[str, Any], lang: str, *, sender: str | None = None, key_dir: Path | None = None
) -> Composed:
    sender = sender or mail.get("from", "alice@a.example")
    to = list(mail.get("to", ["bob@b.example"]))
    cc = list(mail.get("cc", []))
    bcc = list(mail.get("bcc", []))
    msg = EmailMessage()
    msg["From"] = mail.get("from_header", sender)
    msg["To"] = ", ".join(mail.get("to_header", to) if "to_header" in mail else to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = localized(mail.get("subject", "Hello"), lang)
    msg["Date"] = formatdate(localtime=False)
    # A fresh Message-ID each run: every run is a new, real message.
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "a.example")
    if mail.get("smime"):
        if key_dir is None:
            raise ValueError("S/MIME needs the lab key directory")
        data = _smime(msg, mail, lang, sender, to[0], key_dir)
    else:
        if mail.get("attachment") or mail.get("zip"):
            msg.set_content(localized(mail.get("body", "Hello."), lang) + "\n", cte="8bit")
            _attach(msg, mail, lang)
            for part in msg.iter_parts():
                del part["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
        else:
            body = localized(mail.get("body", "Hello."), lang)
            msg.set_content(body + "\n", cte="8bit" if not body.isascii() else "7bit")
        data = _crlf(msg.as_bytes())
    return Composed(sender, to + cc + bcc, data)


def _smime(
    outer: EmailMessage, mail: dict[str, Any], lang: str, sender: str, rcpt: str, key_dir: Path
) -> bytes:
    from app.mua import smime

    # The inner entity carries the content; the outer headers stay readable so
    # servers can route it (S/MIME protects the body, not From/To/Subject).
    inner = _body_part(mail, lang)
    del inner["MIME-Version"]
    entity = smime.sign_and_encrypt(
        _crlf(inner.as_bytes()),
        smime.identity(key_dir, sender),
        smime.identity(key_dir, rcpt).cert,
    )
    return _crlf(outer.as_bytes()).rstrip(b"\r\n") + b"\r\n" + entity

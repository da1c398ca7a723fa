"""What the actors of a scenario can do. Each action drives real clients against
the world's real servers; the servers' taps record what was said.

aiosmtplib plays the MUA's and MTA's SMTP side; Python's own poplib and imaplib
play the receiving MUA (run in a worker thread, since they block).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from app.engines.relay import deliver_lmtp
from app.events import PANEL_SUBMIT, Tap
from app.mua.compose import compose
from app.notes import note
from app.sandbox import Sandbox
from app.scenarios import mailbox_actions, mua_actions, smtp_actions
from app.scenarios.context import RunContext
from app.world.network import HOME_IP
from app.world.world import HOST_A, HOST_B, LOOPBACK

__all__ = ["ACTIONS", "RunContext", "build_message"]

CLIENT_TIMEOUT = 10.0
ActionFn = Callable[[Sandbox, dict[str, Any], "RunContext"], Awaitable[None]]


def _localized(value: Any, lang: str) -> str:
    return str(value.get(lang) or value.get("en")) if isinstance(value, dict) else str(value)


def build_message(mail: dict[str, Any], lang: str, sender: str, rcpts: list[str]) -> bytes:
    msg = EmailMessage()
    msg["From"] = mail.get("from_header", sender)
    msg["To"] = ", ".join(mail.get("to_header", rcpts) if "to_header" in mail else rcpts)
    msg["Subject"] = _localized(mail.get("subject", "Hello"), lang)
    msg["Date"] = formatdate(localtime=False)
    # A fresh Message-ID each run: every run is a new, real message.
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "a.example")
    body = _localized(mail.get("body", "Hello."), lang)
    # 8bit keeps Japanese text readable on screen; the server offers 8BITMIME.
    msg.set_content(body + "\n", cte="8bit" if not body.isascii() else "7bit")
    return msg.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


async def submit(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """The sender's MUA submits on 587: STARTTLS, AUTH PLAIN, one transaction
    (one RCPT TO per envelope recipient: To, Cc and Bcc)."""
    mail = run.mail_for(params)
    composed = compose(mail, run.lang, sender=params.get("from"), key_dir=world.tls.directory)
    sender = composed.sender
    rcpts = list(params.get("to", composed.rcpts))
    password = params.get("password") or world.accounts.password(sender) or ""
    data = composed.data
    if mail.get("smime"):
        _note_smime(world, sender, rcpts[0])
    # From Alice's PC on the home network, the way any MUA of the sandbox connects.
    source = str(params.get("source", HOME_IP))
    host, port = world.route("submission", source=source, actor="mua-alice")
    client = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        source_address=world.source(source),
        local_hostname=params.get("helo", "alice-laptop.a.example"),
        timeout=CLIENT_TIMEOUT,
        start_tls=False,
    )
    await client.connect()
    await client.ehlo()
    await client.starttls(server_hostname=HOST_A, tls_context=world.tls.client_context)
    await client.ehlo()
    await client.auth_plain(sender, password)
    options = ["BODY=8BITMIME"] if not data.isascii() else []
    await client.mail(sender, options=options)
    for rcpt in rcpts:
        await client.rcpt(rcpt)
    await client.data(data)
    await client.quit()


def _note_smime(world: Sandbox, sender: str, rcpt: str) -> None:
    from app.mua import smime  # cryptography: imported when a scenario uses S/MIME

    me = smime.identity(world.tls.directory, sender)
    them = smime.identity(world.tls.directory, rcpt)
    text, detail = note(
        (
            "smime.sealed",
            {
                "signer": me.cert.subject.rfc4514_string(),
                "recipient": them.cert.subject.rfc4514_string(),
            },
        )
    )
    Tap(world.sink, PANEL_SUBMIT, "mua-alice", "mua-alice", "S/MIME", None).note(
        text, "smime.encrypt", detail=detail
    )


async def deliver_local(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """mx.b.example hands what it accepted to the MDA over LMTP (`via`: the actor
    that hands it over, e.g. the backup MX mta-b2)."""
    for entry in world.inbound.entries():
        if params.get("via"):
            world.endpoints["lmtp-b"].expect_client(params["via"])
        await deliver_lmtp(world.ctx, LOOPBACK, world.ports["lmtp-b"], entry, lhlo=HOST_B)
        world.inbound.remove(entry.qid)


ACTIONS: dict[str, ActionFn] = {
    "submit": submit,
    "smtp": smtp_actions.smtp_session,
    "relay": smtp_actions.relay_outbound,
    "cancel_hold": smtp_actions.cancel_hold,
    "deliver": deliver_local,
    "pop3_fetch": mailbox_actions.pop3_fetch,
    "imap_fetch": mailbox_actions.imap_fetch,
    "imap_idle": mailbox_actions.imap_idle,
    "imap_idle_end": mailbox_actions.imap_idle_end,
    "mime_decode": mua_actions.mime_decode,
    "smime_open": mua_actions.smime_open,
    "path_reader": mua_actions.path_reader,
    "attachment_name": mua_actions.attachment_name,
}

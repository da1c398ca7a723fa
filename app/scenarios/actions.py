"""What the actors of a scenario can do. Each action drives real clients against
the world's real servers; the servers' taps record what was said.

aiosmtplib plays the MUA's and MTA's SMTP side; Python's own poplib and imaplib
play the receiving MUA (run in a worker thread, since they block).
"""

from __future__ import annotations

import asyncio
import imaplib
import poplib
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from app.engines.relay import deliver_lmtp, relay
from app.world.world import HOST_A, HOST_B, LOOPBACK, World

CLIENT_TIMEOUT = 10.0
ActionFn = Callable[[World, dict[str, Any], "RunContext"], Awaitable[None]]


class RunContext:
    """What a run knows beyond the world: the scenario's mail and the language."""

    def __init__(self, mail: dict[str, Any], lang: str) -> None:
        self.mail = mail
        self.lang = lang


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


async def submit(world: World, params: dict[str, Any], run: RunContext) -> None:
    """The sender's MUA submits on 587: STARTTLS, AUTH PLAIN, one transaction."""
    mail = run.mail
    sender = params.get("from", mail.get("from", "alice@a.example"))
    rcpts = list(params.get("to", mail.get("to", ["bob@b.example"])))
    password = params.get("password") or world.accounts.password(sender) or ""
    data = build_message(mail, run.lang, sender, rcpts)
    client = aiosmtplib.SMTP(
        hostname=LOOPBACK,
        port=world.ports["submission"],
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


async def relay_outbound(world: World, params: dict[str, Any], run: RunContext) -> None:
    """mail.a.example's MTA sends what the MSA queued to each recipient's MX."""
    for entry in world.outbound.entries():
        result = await relay(world.ctx, world.dns, world.network, entry, helo=HOST_A)
        if not result.deferred:
            world.outbound.remove(entry.qid)


async def deliver_local(world: World, params: dict[str, Any], run: RunContext) -> None:
    """mx.b.example hands what it accepted to the MDA over LMTP."""
    for entry in world.inbound.entries():
        await deliver_lmtp(world.ctx, LOOPBACK, world.ports["lmtp-b"], entry, lhlo=HOST_B)
        world.inbound.remove(entry.qid)


def _pop3_session(port: int, ctx: Any, user: str, password: str, delete: bool) -> None:
    pop = poplib.POP3(LOOPBACK, port, timeout=CLIENT_TIMEOUT)
    try:
        pop.stls(context=ctx)
        pop.user(user)
        pop.pass_(password)
        count, _size = pop.stat()
        pop.list()
        for n in range(1, count + 1):
            pop.retr(n)
            if delete:
                pop.dele(n)
    finally:
        pop.quit()


async def pop3_fetch(world: World, params: dict[str, Any], run: RunContext) -> None:
    """The recipient's MUA downloads over POP3 (STLS on 110); DELE if it does not keep mail."""
    user = params.get("user", "bob@b.example")
    password = params.get("password") or world.accounts.password(user) or ""
    await asyncio.to_thread(
        _pop3_session,
        world.ports["pop3-b"],
        world.tls.client_context,
        user,
        password,
        bool(params.get("delete", True)),
    )


def _imap_session(port: int, ctx: Any, user: str, password: str) -> None:
    imap = imaplib.IMAP4(LOOPBACK, port, timeout=CLIENT_TIMEOUT)
    try:
        imap.starttls(ssl_context=ctx)
        imap.login(user, password)
        imap.select("INBOX")
        # PEEK reads without side effects, so marking it read is the explicit STORE below.
        imap.fetch("1", "(BODY.PEEK[])")
        imap.store("1", "+FLAGS", "(\\Seen)")
    finally:
        imap.logout()


async def imap_fetch(world: World, params: dict[str, Any], run: RunContext) -> None:
    """The recipient's MUA reads over IMAP (STARTTLS on 143); the mail stays on the server."""
    user = params.get("user", "bob@b.example")
    password = params.get("password") or world.accounts.password(user) or ""
    await asyncio.to_thread(
        _imap_session, world.ports["imap-b"], world.tls.client_context, user, password
    )


ACTIONS: dict[str, ActionFn] = {
    "submit": submit,
    "relay": relay_outbound,
    "deliver": deliver_local,
    "pop3_fetch": pop3_fetch,
    "imap_fetch": imap_fetch,
}

"""An SMTP/LMTP client connection on asyncio, driving the sans-IO reply reader in
app/protocols/smtp_client.py. The sandbox's MTAs use it for their hops.

Why not aiosmtplib here: it reads exactly one reply per command it writes, so it
cannot pipeline (RFC 2920), and a busy MTA's relay and LMTP hops spend most of their
time on round trips. This client sends MAIL, every RCPT and DATA in one write when
the server offers PIPELINING, and one command at a time otherwise; the lines on the
wire are the same either way. The learners' own clients in the scenarios still use
aiosmtplib and smtplib.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from typing import NamedTuple

from app.protocols.smtp_client import ProtocolError, Reply, ReplyReader, command, data_block
from app.protocols.smtp_client import extensions as parse_extensions

TIMEOUT = 30.0


class Disconnected(ConnectionError):
    """The server closed the connection, or it broke, before it answered."""


class Transaction(NamedTuple):
    mail: Reply
    rcpts: dict[str, Reply]  # recipient -> its RCPT reply
    data: list[Reply]  # one reply (SMTP) or one per accepted recipient (LMTP); [] if none

    @property
    def accepted(self) -> list[str]:
        return [r for r, reply in self.rcpts.items() if reply.ok]


class SMTPClient(asyncio.Protocol):
    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.extensions: dict[str, str] = {}
        self._reader = ReplyReader()
        self._replies: collections.deque[Reply] = collections.deque()
        self._arrived = asyncio.Event()
        self._error: BaseException | None = None

    # -- connecting ---------------------------------------------------------
    @classmethod
    async def open(
        cls,
        host: str | None = None,
        port: int | None = None,
        *,
        path: str | None = None,
        source: tuple[str, int] | None = None,
        timeout: float = TIMEOUT,
    ) -> tuple[SMTPClient, Reply]:
        """Connect to host:port (or the Unix socket `path`); returns the client and the
        greeting. A greeting other than 220 closes the connection and raises."""
        loop = asyncio.get_running_loop()
        client = cls(timeout)
        async with asyncio.timeout(timeout):
            if path is not None:
                await loop.create_unix_connection(lambda: client, path)
            else:
                await loop.create_connection(lambda: client, host, port, local_addr=source)
        try:
            greeting = await client.reply()
        except BaseException:
            client.close()
            raise
        if greeting.code != 220:
            client.close()
            raise Disconnected(f"greeting {greeting}")
        return client, greeting

    async def hello(self, name: str, *, lmtp: bool = False) -> Reply:
        reply = (await self.exchange([command("LHLO" if lmtp else "EHLO", name)]))[0]
        self.extensions = parse_extensions(reply) if reply.code == 250 else {}
        return reply

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> Reply:
        """STARTTLS (RFC 3207); on 220 the connection continues inside TLS, and the
        caller must say EHLO again (what the server offered before no longer holds)."""
        reply = (await self.exchange([command("STARTTLS")]))[0]
        if reply.code != 220:
            return reply
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            tls = await loop.start_tls(
                self.transport, self, context, server_hostname=server_hostname
            )
        if tls is None:
            raise Disconnected("TLS handshake ended the connection")
        self.transport = tls  # type: ignore[assignment]
        self.extensions = {}
        return reply

    # -- a mail transaction -------------------------------------------------
    async def send(
        self,
        mail_from: str,
        rcpts: list[str],
        message: bytes,
        *,
        lmtp: bool = False,
        body: str = "",
    ) -> Transaction:
        """MAIL, RCPT for each recipient, DATA and the message. Pipelined when the
        server offers PIPELINING (RFC 2920 §3.1: DATA ends the group, the message waits
        for 354); RSET when nobody was accepted or DATA was refused. `body` is the
        BODY= the mail came with ("8BITMIME"); it is declared when the server offers
        8BITMIME (RFC 6152 §3). A recipient named twice is sent once."""
        rcpts = list(dict.fromkeys(rcpts))
        params = f" BODY={body}" if body and body in self.extensions else ""
        lines = [command("MAIL", f"FROM:<{mail_from}>{params}")]
        lines += [command("RCPT", f"TO:<{rcpt}>") for rcpt in rcpts]
        lines.append(command("DATA"))
        if "PIPELINING" in self.extensions:
            replies = await self.exchange(lines)
        else:
            replies = []
            for i, line in enumerate(lines):
                replies += await self.exchange([line])
                if i == 0 and replies[0].code != 250:
                    break  # no transaction: RCPT and DATA would only get 503
                if i == len(rcpts) and not any(r.ok for r in replies[1:]):
                    break  # nobody accepted: do not start DATA
        mail, rcpt_replies = replies[0], replies[1 : 1 + len(rcpts)]
        rcpt_map = dict(zip(rcpts, rcpt_replies, strict=False))
        for rcpt in rcpts[len(rcpt_replies) :]:
            rcpt_map[rcpt] = Reply(503, "not tried: the sender was refused")
        transaction = Transaction(mail, rcpt_map, [])
        go = replies[-1] if len(replies) == len(lines) else None
        if go is None or go.code != 354:
            if go is not None or mail.code == 250:
                await self.exchange([command("RSET")])
            if go is not None:
                transaction.data.append(go)
            return transaction
        self._write(data_block(message))
        # LMTP answers once per accepted recipient (RFC 2033 §4.2), SMTP once.
        count = max(1, len(transaction.accepted)) if lmtp else 1
        transaction.data.extend([await self.reply() for _ in range(count)])
        return transaction

    async def quit(self) -> None:
        with contextlib.suppress(OSError):  # closed or timed out: it is going anyway
            await self.exchange([command("QUIT")])
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    @property
    def is_connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # -- replies ------------------------------------------------------------
    async def exchange(self, lines: list[bytes]) -> list[Reply]:
        """Write the lines in one go and read one reply for each."""
        self._write(b"".join(lines))
        return [await self.reply() for _ in lines]

    async def reply(self) -> Reply:
        async with asyncio.timeout(self.timeout):
            while not self._replies:
                if self._error is not None:
                    raise self._error
                self._arrived.clear()
                await self._arrived.wait()
        return self._replies.popleft()

    def _write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self.transport is None or self.transport.is_closing():
            raise Disconnected("connection closed")
        self.transport.write(data)

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._replies.extend(self._reader.feed(data))
        except ProtocolError as exc:
            self._fail(Disconnected(f"not an SMTP reply: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        if self._replies:
            self._arrived.set()

    def eof_received(self) -> bool:
        self._fail(Disconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Disconnected(str(exc) if exc else "connection closed"))
        self.transport = None

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._arrived.set()

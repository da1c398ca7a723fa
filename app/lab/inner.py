"""The sandbox's internal hops: the MX listeners of both domains, the MDA behind LMTP and
the inbound queue stage that feeds it.

They run in the lab process beside the public listeners, on the same event loop (see
docs/architecture.md "Processes" for why not in a process of their own). The MX
listeners sit on ephemeral loopback ports (LabWorld routes the MX hosts to them), the
MDA on a Unix socket in a private directory, as Postfix hands mail to Dovecot's LMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from app.engines.base import EngineContext, close_server
from app.engines.relay import ClientPool, deliver_lmtp
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy
from app.lab.stages import Stage, settle
from app.sandbox import endpoint_for, start_listener
from app.topology import LAB_INTERNAL
from app.world.spool import QueuedMail, Spool

LOOPBACK = "127.0.0.1"


class InnerHops:
    def __init__(
        self,
        ctx: EngineContext,
        inbound: dict[str, Spool],
        lmtp_socket: str,
        delivered: Callable[[str], None],
    ) -> None:
        self.ctx = ctx
        self.inbound = inbound  # the inbound queue of each MX host
        self.lmtp_socket = lmtp_socket
        self.delivered = delivered
        self.stage = Stage(ClientPool())  # LMTP sessions to the MDA, reused while busy
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        for listener in LAB_INTERNAL:
            endpoint = endpoint_for(listener)
            if listener.role == "delivery":
                policy: object = DeliveryPolicy(
                    self.ctx.accounts,
                    self.ctx.store,
                    listener.hostname,
                    self.delivered,
                    pipelining=True,
                )
                # A socket left by a previous run (killed) is replaced.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lmtp_socket)
                server = await start_listener(
                    self.ctx, listener, endpoint, policy, path=self.lmtp_socket
                )
            else:
                spool = self.inbound[listener.hostname]
                policy = InboundPolicy(
                    self.ctx.accounts,
                    {listener.domain},
                    spool,
                    listener.hostname,
                    lambda e, s=spool: self.stage.offer(s, e),
                    pipelining=True,
                )
                server = await start_listener(self.ctx, listener, endpoint, policy, host=LOOPBACK)
                self.ports[listener.name] = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    async def flush_inbound(self) -> None:
        async def one(entry: QueuedMail, host: str, spool: Spool) -> None:
            async with self.stage.slot():
                result = await deliver_lmtp(
                    self.ctx,
                    LOOPBACK,
                    24,
                    entry,
                    lhlo=host,
                    pool=self.stage.pool,
                    socket_path=self.lmtp_socket,
                )
            await settle(spool, entry, result)

        for host, spool in self.inbound.items():
            await self.stage.each(spool, lambda e, h=host, s=spool: one(e, h, s))

    async def close(self) -> None:
        """After the inbound stage has drained: the MDA's last 250s are in."""
        await self.stage.pool.expire(everything=True)
        for server in self._servers:
            await close_server(server)
        self._servers.clear()

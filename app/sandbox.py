"""The one builder: a listener's description (app/topology.py) becomes a running engine.

`start_listener` is used by the scenario sandbox below, by the lab's public listeners
(app/lab/world.py) and by the lab's internal hops (app/lab/inner.py). `Sandbox` is the
scenario world with its listeners: the state lives in `app.world.world.World` (mail
store, DNS, network, queues), which imports no engine; this module puts engines on it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from app.engines.base import Endpoint, EngineContext, close_server
from app.engines.smtp_policies import DeliveryPolicy, InboundPolicy, SubmissionPolicy
from app.engines.smtp_server import start_smtp_server
from app.topology import HOST_A, HOST_B, SCENARIO_DEFAULT, SCENARIO_EXTRA, Listener, by_name
from app.world.world import LOOPBACK, World

DKIM_SELECTOR = "mf2025"


def endpoint_for(listener: Listener, idle_timeout: float | None = None) -> Endpoint:
    """The engines' view of a listener: panel, actors, standard port, limits."""
    return Endpoint(
        listener.panel,
        listener.protocol,
        listener.standard_port,
        listener.server_actor,
        listener.client_actor,
        listener.hostname,
        implicit_tls=listener.implicit_tls,
        idle_timeout=idle_timeout or listener.idle_timeout,
    )


async def start_listener(
    ctx: EngineContext,
    listener: Listener,
    endpoint: Endpoint,
    policy: Any = None,
    *,
    host: str = LOOPBACK,
    port: int = 0,
    path: str | None = None,
    **options: Any,
) -> asyncio.AbstractServer:
    """Start the engine a listener's protocol needs. SMTP-family listeners run `policy`
    (AUTH is required where the role is submission); POP3/IMAP take `options`
    (`cleartext_login`, and POP3's `on_login`)."""
    if listener.protocol in ("SMTP", "LMTP"):
        return await start_smtp_server(
            ctx,
            endpoint,
            policy,
            host=host,
            port=port,
            require_auth=listener.role == "submission",
            lmtp=listener.protocol == "LMTP",
            path=path,
        )
    if listener.protocol == "POP3":
        from app.engines.pop3_server import start_pop3_server

        return await start_pop3_server(ctx, endpoint, host=host, port=port, **options)
    if listener.protocol == "IMAP":
        from app.engines.imap_server import start_imap_server

        return await start_imap_server(ctx, endpoint, host=host, port=port, **options)
    raise ValueError(f"no engine for {listener.protocol}")


def _dead_port() -> int:
    """A loopback port nobody listens on: connecting to it is really refused."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


EXTRA = by_name(SCENARIO_EXTRA)


@dataclass
class Sandbox(World):
    """A scenario's world with its listeners on ephemeral loopback ports."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _servers: list[asyncio.AbstractServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        wanted = [*SCENARIO_DEFAULT, *(EXTRA[n] for n in sorted(self.options.listeners))]
        self.listeners = {listener.name: listener for listener in wanted}
        for name, listener in self.listeners.items():
            self.endpoints.setdefault(name, endpoint_for(listener))
        self.ctx = EngineContext(self.store, self.accounts, self.tls, self.sink)

    async def start(self) -> None:
        from app.engines.imap_server import notify_mailbox_changed
        from app.world.pop_before_smtp import PopBeforeSmtp

        opts, net = self.options, self.network

        def delivered(rcpt: str) -> None:
            notify_mailbox_changed(self.store.account_path(rcpt))

        signer = None
        if opts.dkim:
            from app.engines.dkim_keys import DkimKey

            signer = DkimKey.load(self.tls.directory, "a.example", DKIM_SELECTOR)
            signer.publish(self.dns)
        sender_auth = None
        if opts.sender_auth:
            from app.engines.sender_auth import SenderAuth

            sender_auth = SenderAuth(self.dns, self.sink, authserv_id=HOST_B, actor="mta-b")
        dnsbl = None
        if opts.dnsbl:
            from app.engines.dnsbl import Dnsbl

            dnsbl = Dnsbl(self.dns, self.sink, actor="mta-b")
        if opts.pop_before_smtp:
            self.pop_before_smtp = PopBeforeSmtp(translate=net.simulated_peer)
        pbs = self.pop_before_smtp
        inbound_spools = {"b.example": self.inbound, "a.example": self.inbound_a}

        def policy(listener: Listener) -> Any:
            """The scenario's policy for a listener's role (app/topology.py)."""
            if listener.role == "submission":
                return SubmissionPolicy(
                    self.accounts,
                    self.outbound,
                    HOST_A,
                    self.send_hold.queued if self.send_hold else None,
                    signer=signer,
                    network=net,
                )
            if listener.role == "inbound" and listener.domain == "b.example":
                return InboundPolicy(
                    self.accounts,
                    {"b.example"},
                    self.inbound,
                    listener.hostname,
                    network=net,
                    sender_auth=sender_auth,
                    dnsbl=dnsbl,
                )
            if listener.role == "inbound":
                return InboundPolicy(
                    self.accounts,
                    {listener.domain},
                    inbound_spools[listener.domain],
                    listener.hostname,
                    network=net,
                    relay_allowed=pbs.allowed if pbs else None,
                    outbound=self.outbound if pbs else None,
                )
            if listener.role == "delivery":
                return DeliveryPolicy(self.accounts, self.store, listener.hostname, delivered)
            return None

        def options(listener: Listener) -> dict[str, Any]:
            if listener.role not in ("pop3", "imap") or listener.implicit_tls:
                return {}
            extra: dict[str, Any] = {"cleartext_login": opts.cleartext_login}
            if listener.role == "pop3" and listener.hostname == HOST_A:
                extra["on_login"] = pbs.logged_in if pbs else None
            return extra

        for name, listener in self.listeners.items():
            server = await start_listener(
                self.ctx, listener, self.endpoints[name], policy(listener), **options(listener)
            )
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        # Every client of the sandbox reaches a listener only through the lab network,
        # at the simulated address of its host and the standard port it plays.
        for name, endpoint in self.endpoints.items():
            answers = self.dns.query(endpoint.hostname, "A")
            if answers and name in self.ports:
                self.network.attach(answers[0].value, endpoint.port, (LOOPBACK, self.ports[name]))
        for host in opts.down:
            # A host that is down: its address answers, but nothing listens on 25.
            self.network.attach(self.host_ip(host), 25, (LOOPBACK, _dead_port()))

    def route(self, name: str, source: str | None = None, actor: str = "") -> tuple[str, int]:
        """The real (host, port) of listener `name`, asked of the lab network the way a
        client would reach it (through the firewall when `source` is set)."""
        endpoint = self.endpoints[name]
        return self.network.resolve(
            self.host_ip(endpoint.hostname), endpoint.port, source=source, actor=actor
        )

    async def close(self) -> None:
        for server in self._servers:
            await close_server(server)
        self._servers.clear()

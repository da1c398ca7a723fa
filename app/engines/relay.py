"""The sending side of a hop: the relaying MTA (MX lookup, then SMTP on port 25)
and the receiving MTA's hand-off to the MDA over LMTP, both on app/engines/smtp_client.py
(which pipelines where the server offers PIPELINING).

The lines they exchange are recorded by the listening server's tap; what only the
client sees (DNS answers, a refused connection) is recorded here as notes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.engines.base import EngineContext
from app.engines.smtp_client import Disconnected, SMTPClient, Transaction
from app.events import PANEL_RELAY, Tap
from app.protocols.smtp_replies import MAX_RECIPIENTS
from app.world.dns import SimulatedDNS
from app.world.network import LabNetwork, NotInLab
from app.world.spool import QueuedMail

CONNECT_TIMEOUT = 5.0


@dataclass
class HopResult:
    delivered: list[str]
    refused: dict[str, str]  # recipient -> the server's permanent error reply
    deferred: dict[str, str]  # recipient -> why it could not be tried now
    servers: dict[str, str] = field(default_factory=dict)  # recipient -> MX host that answered


class ClientPool:
    """Open SMTP/LMTP sessions kept for the next mail to the same server.

    RFC 5321 §3.3 lets one session carry many transactions; a busy MTA reuses its
    connections (Postfix's connection cache) instead of paying a TCP and TLS handshake
    per message. Scenario runs pass no pool, so each of their hops is a whole session.
    """

    def __init__(self, idle_seconds: float = 2.0) -> None:
        self.idle_seconds = idle_seconds
        self._idle: dict[tuple[str, int], list[tuple[float, SMTPClient]]] = {}

    def take(self, key: tuple[str, int]) -> SMTPClient | None:
        clients = self._idle.get(key, [])
        while clients:
            _, client = clients.pop()
            if client.is_connected:
                return client
        return None

    def give(self, key: tuple[str, int], client: SMTPClient) -> None:
        self._idle.setdefault(key, []).append((time.monotonic(), client))

    async def expire(self, *, everything: bool = False) -> None:
        """QUIT the sessions idle for longer than idle_seconds (all of them at shutdown)."""
        limit = time.monotonic() - (0 if everything else self.idle_seconds)
        for key, clients in list(self._idle.items()):
            keep = [(t, c) for t, c in clients if t > limit and not everything]
            for t, client in clients:
                if (t, client) not in keep:
                    await client.quit()
            self._idle[key] = keep

    def __len__(self) -> int:
        return sum(len(c) for c in self._idle.values())


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _connect_error(exc: BaseException) -> str:
    # The error names the real loopback port; the learner needs the simulated story.
    text = str(exc).lower()
    if "refused" in text or "errno 111" in text or "connect call failed" in text:
        return "Connection refused (no server listening on port 25)"
    if "timed out" in text or isinstance(exc, TimeoutError):
        return "Connection timed out"
    if isinstance(exc, Disconnected):
        return "Server closed the connection"
    return "Connection failed"


def lookup_mx(dns: SimulatedDNS, domain: str, tap: Tap) -> list[str]:
    """The MX query as events; returns the exchange hosts, lowest preference first."""
    tap.client(f"{domain}. IN MX ?", "dns.query.mx")
    mx = dns.query(domain, "MX")
    if mx:
        tap.server("\n".join(r.zone_line() for r in mx), "dns.answer.mx")
        return [r.value for r in mx]
    # No MX: the domain itself is the implicit MX (RFC 5321 §5.1).
    tap.server(f"{domain}. IN MX: NOERROR, no answer (use the A record)", "dns.answer.nomx")
    return [domain]


def lookup_a(dns: SimulatedDNS, host: str, tap: Tap) -> list[str]:
    tap.client(f"{host}. IN A ?", "dns.query.a")
    answers = dns.query(host, "A")
    if answers:
        tap.server("\n".join(r.zone_line() for r in answers), "dns.answer.a")
    else:
        tap.server(f"{host}. IN A: NXDOMAIN", "dns.answer.nxdomain")
    return [r.value for r in answers]


async def relay(
    ctx: EngineContext,
    dns: SimulatedDNS,
    network: LabNetwork,
    mail: QueuedMail,
    *,
    helo: str,
    client_actor: str = "mta-a",
    source: tuple[str, int] | None = None,
    pool: ClientPool | None = None,
) -> HopResult:
    """Send one queued mail to the MX of each recipient domain (port 25).

    `source` is the local address to connect from (the MTA's simulated address in
    the lab network, so the receiver can judge it, e.g. for SPF)."""
    result = HopResult([], {}, {})
    by_domain: dict[str, list[str]] = {}
    for rcpt in mail.rcpt_tos:
        by_domain.setdefault(_domain(rcpt), []).append(rcpt)
    for domain, rcpts in by_domain.items():
        dns_tap = Tap(ctx.sink, PANEL_RELAY, client_actor, "dns", "DNS", 53)
        # What happened to a connection attempt to an exchanger's port 25 (not DNS's 53).
        tcp_tap = Tap(ctx.sink, PANEL_RELAY, client_actor, "dns", "TCP", 25)
        sent = False
        preference = {r.value: r.preference for r in dns.query(domain, "MX")}
        failed: str | None = None
        # Try the exchanges in preference order; resolve each only when it is its turn.
        for host in lookup_mx(dns, domain, dns_tap):
            if failed is not None:
                # RFC 5321 §5.1: on failure, go on to the next-lowest preference.
                tcp_tap.note(
                    f"{failed} (MX {preference.get(failed, 0)}) failed; trying {host} "
                    f"(MX {preference.get(host, 0)})",
                    "relay.next_mx",
                    src=client_actor,
                    dst=host,
                    protocol="TCP",
                )
            failed = host
            for address in lookup_a(dns, host, dns_tap):
                try:
                    real_host, real_port = network.resolve(address, 25)
                    await _send(
                        ctx, real_host, real_port, host, mail, rcpts, helo, result, source, pool
                    )
                except NotInLab as exc:
                    tcp_tap.note(
                        f"{host} [{address}]:25 — {exc}",
                        "relay.unreachable",
                        src=client_actor,
                        dst=host,
                        protocol="TCP",
                    )
                    continue
                except OSError as exc:  # refused, timed out, or closed on us
                    tcp_tap.note(
                        f"connect {host} [{address}]:25 — {_connect_error(exc)}",
                        "relay.connect_failed",
                        src=client_actor,
                        dst=host,
                        protocol="TCP",
                    )
                    continue
                sent = True
                for rcpt in rcpts:
                    result.servers[rcpt] = host
                break
            if sent:
                break
        if not sent:
            for rcpt in rcpts:
                result.deferred[rcpt] = f"no reachable MX for {domain}"
    return result


async def _send(
    ctx: EngineContext,
    host: str,
    port: int,
    server_name: str,
    mail: QueuedMail,
    rcpts: list[str],
    helo: str,
    result: HopResult,
    source: tuple[str, int] | None = None,
    pool: ClientPool | None = None,
) -> None:
    key = (host, port)
    client = pool.take(key) if pool is not None else None
    if client is None:
        client, _ = await SMTPClient.open(host, port, source=source, timeout=CONNECT_TIMEOUT)
        try:
            await _greet(client, helo)
            if "STARTTLS" in client.extensions:
                # Opportunistic TLS between MTAs, as real servers do it; it protects this
                # hop only.
                reply = await client.starttls(ctx.tls.client_context, server_name)
                if reply.code == 220:
                    await _greet(client, helo)
        except BaseException:
            client.close()
            raise
    reusable = False
    try:
        # At most MAX_RECIPIENTS per transaction (RFC 5321 §4.5.3.1.8); the rest follow
        # in the next one instead of being deferred with 452.
        for start in range(0, len(rcpts), MAX_RECIPIENTS):
            chunk = rcpts[start : start + MAX_RECIPIENTS]
            transaction = await client.send(mail.mail_from, chunk, mail.data, body=mail.body)
            _judge(transaction, result)
        reusable = pool is not None
    finally:
        if reusable:
            pool.give(key, client)  # type: ignore[union-attr]
        else:
            await client.quit()


async def _greet(client: SMTPClient, name: str, *, lmtp: bool = False) -> None:
    reply = await client.hello(name, lmtp=lmtp)
    if reply.code != 250:
        raise Disconnected(f"{'LHLO' if lmtp else 'EHLO'} refused: {reply}")


def _judge(transaction: Transaction, result: HopResult) -> None:
    """Sort the recipients of one transaction by the reply that decided each: delivered
    on 250, deferred on 4xx (the queue tries again), refused otherwise (the sender gets
    a bounce). A refused MAIL decides for everyone; LMTP answers DATA per recipient."""
    t = transaction
    if t.mail.code != 250:
        decided = dict.fromkeys(t.rcpts, t.mail)
    else:
        decided = {rcpt: reply for rcpt, reply in t.rcpts.items() if not reply.ok}
        accepted = t.accepted
        if accepted and t.data:
            # LMTP: one reply per accepted recipient, in RCPT order; SMTP (or a refused
            # DATA): one reply that decides for all of them.
            per_rcpt = t.data if len(t.data) == len(accepted) else [t.data[0]] * len(accepted)
            decided.update(zip(accepted, per_rcpt, strict=True))
    for rcpt, reply in decided.items():
        if reply.code == 250:
            result.delivered.append(rcpt)
        elif 400 <= reply.code < 500:
            result.deferred[rcpt] = str(reply)
        else:
            result.refused[rcpt] = str(reply)


async def deliver_lmtp(
    ctx: EngineContext,
    host: str,
    port: int,
    mail: QueuedMail,
    *,
    lhlo: str,
    pool: ClientPool | None = None,
    socket_path: str | None = None,
) -> HopResult:
    """Hand a mail to the MDA over LMTP (RFC 2033).

    The MDA listens on host:port, or on the Unix socket `socket_path`."""
    result = HopResult([], {}, {})
    where = socket_path or host
    key = (f"{where} as {lhlo}", port)  # a session greeted with another LHLO is another client
    client = pool.take(key) if pool is not None else None
    if client is None:
        client, _ = await SMTPClient.open(host, port, path=socket_path, timeout=CONNECT_TIMEOUT)
        try:
            await _greet(client, lhlo, lmtp=True)
        except BaseException:
            client.close()
            raise
    reusable = False
    try:
        # All recipients in one transaction: the message travels once and the MDA
        # answers the final "." once per accepted recipient, in RCPT order (RFC 2033
        # §4.2), so each recipient is delivered, deferred or refused on its own.
        rcpts = list(dict.fromkeys(mail.rcpt_tos))
        for start in range(0, len(rcpts), MAX_RECIPIENTS):
            chunk = rcpts[start : start + MAX_RECIPIENTS]
            transaction = await client.send(
                mail.mail_from, chunk, mail.data, lmtp=True, body=mail.body
            )
            _judge(transaction, result)
        reusable = pool is not None
    finally:
        if reusable:
            pool.give(key, client)  # type: ignore[union-attr]
        else:
            await client.quit()
    return result

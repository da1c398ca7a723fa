"""SMTP steps a scenario can script: a client session step by step, and the relaying
MTA (with bounces). The servers' taps record the lines; a refused step is simply
what the server answered, so these actions never fail on a 4xx/5xx reply."""

from __future__ import annotations

import time
from typing import Any

import aiosmtplib
from aiosmtplib.auth import auth_plain_encode

from app.engines.dsn import build_dsn
from app.engines.relay import deliver_lmtp, relay
from app.events import PANEL_RELAY, Tap
from app.mua.compose import compose
from app.notes import note
from app.sandbox import Sandbox
from app.scenarios.context import RunContext
from app.world.firewall import FirewallRefused
from app.world.network import HOME_IP, NotInLab
from app.world.spool import QueuedMail, new_queue_id
from app.world.world import HOST_A, LOOPBACK

CLIENT_TIMEOUT = 10.0
DEFAULT_STEPS = ("ehlo", "starttls", "ehlo", "auth", "mail", "rcpt", "data", "quit")
KNOWN_STEPS = frozenset(
    {"ehlo", "helo", "starttls", "auth", "mail", "rcpt", "data", "rset", "quit"}
)


async def smtp_session(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    from app.engines.dkim_keys import DkimKey  # dkimpy and cryptography, when used

    """One SMTP client session, step by step (`steps`), against listener `server`.

    Parameters: server (endpoint name), actor and panel (who connects, which panel
    shows it), source (the client's simulated IP: it binds there and passes the
    lab network's firewall), steps, user, password, mail (a [mails.<name>]), helo,
    forge_dkim (sign with the client's own key under the From domain's name),
    sign_dkim (the client's own domain signs honestly, its key published in its zone)."""
    server = params.get("server", "submission")
    steps = [str(s) for s in params.get("steps", DEFAULT_STEPS)]
    unknown = set(steps) - KNOWN_STEPS
    if unknown:
        raise ValueError(f"unknown SMTP steps {sorted(unknown)}")
    endpoint = world.endpoints[server]
    actor = params.get("actor", endpoint.client_actor)
    # A mail program connects from the home network; other hosts say where they are.
    source_ip = params.get("source") or (HOME_IP if actor.startswith("mua-") else None)
    try:
        host, port = world.route(server, source=source_ip, actor=actor)
    except (FirewallRefused, NotInLab):
        return  # the firewall (or the lab network) already recorded the refusal
    mail = run.mail_for(params)
    composed = compose(mail, run.lang, key_dir=world.tls.directory)
    data = composed.data
    if params.get("forge_dkim"):
        # A forger can sign with its own key and claim d=<someone else's domain>; the
        # receiver fetches the real domain's key, so the signature cannot verify.
        forger = DkimKey.load(world.tls.directory, str(params["forge_dkim"]), "mf2025")
        from_domain = composed.sender.rpartition("@")[2]
        data = forger.sign(data, as_domain=from_domain) + data
    if params.get("sign_dkim"):
        # Any domain's owner can publish a key and sign: a lookalike domain's mail
        # carries a signature that really verifies, for the lookalike domain.
        own = DkimKey.load(world.tls.directory, str(params["sign_dkim"]), "mf2025")
        own.publish(world.dns)
        signature = own.sign(data)
        data = signature + data
        Tap(world.sink, endpoint.panel, actor, actor, "DKIM", None).note(
            signature.decode().rstrip(), "dkim.sign.own"
        )
    user = params.get("user", composed.sender)
    password = params.get("password") or world.accounts.password(user) or ""
    endpoint.expect_client(actor, params.get("panel"))
    client = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        local_hostname=params.get("helo", "alice-laptop.a.example"),
        source_address=world.source(source_ip) if source_ip else None,
        timeout=CLIENT_TIMEOUT,
        use_tls=endpoint.implicit_tls,
        start_tls=False,
        tls_context=world.tls.client_context,
    )
    await client.connect()
    try:
        for step in steps:
            ok = await _step(
                client,
                step,
                composed.sender,
                composed.rcpts,
                data,
                user,
                password,
                endpoint.hostname,
            )
            if not ok:
                break
    finally:
        client.close()


async def _step(
    client: aiosmtplib.SMTP,
    step: str,
    sender: str,
    rcpts: list[str],
    data: bytes,
    user: str,
    password: str,
    server_name: str,
) -> bool:
    """Run one step; False when the session cannot go on (the server hung up)."""
    try:
        if step == "ehlo":
            await client.ehlo()
        elif step == "helo":
            await client.helo()
        elif step == "starttls":
            await client.starttls(server_hostname=server_name, tls_context=client.tls_context)
        elif step == "auth":
            # Sent as the client would, even when not offered: the server decides.
            await client.execute_command(b"AUTH", b"PLAIN", auth_plain_encode(user, password))
        elif step == "mail":
            options = ["BODY=8BITMIME"] if not data.isascii() else []
            await client.mail(sender, options=options)
        elif step == "rcpt":
            for rcpt in rcpts:
                try:
                    await client.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused:
                    continue
        elif step == "data":
            await client.data(data)
        elif step == "rset":
            await client.rset()
        elif step == "quit":
            await client.quit()
            return False
    except aiosmtplib.SMTPServerDisconnected:
        return False
    except aiosmtplib.SMTPResponseException:
        return True  # a refusal is the lesson; the tap recorded it
    return True


async def relay_outbound(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """mail.a.example's MTA sends what waits in its queue to each recipient's MX; a
    recipient the next hop refuses comes back to the sender as a DSN (RFC 3464).
    With a send hold, `after` is how many seconds pass first; held mail stays queued."""
    source = world.source(world.host_ip(HOST_A))
    hold = world.send_hold
    if hold is not None and params.get("after"):
        hold.advance(float(params["after"]))  # the scenario lets that much time pass
    for entry in world.outbound.entries():
        if hold is not None and not hold.ready(entry, "mta-a"):
            continue  # 送信保留: the mail stays queued until its hold is over
        result = await relay(world.ctx, world.dns, world.network, entry, helo=HOST_A, source=source)
        if not result.deferred:
            world.outbound.remove(entry.qid)
        if result.refused and entry.mail_from:
            await _bounce(world, entry, result.refused, result.servers)


async def cancel_hold(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """The sender cancels a held mail (by recipient) before its hold is over."""
    if world.send_hold is None:
        raise ValueError("cancel_hold needs [world] send_hold")
    world.send_hold.cancel(world.outbound, str(params["rcpt"]), params.get("actor", "mua-alice"))


async def _bounce(
    world: Sandbox, entry: QueuedMail, refused: dict[str, str], servers: dict[str, str]
) -> None:
    remote = next(iter(servers.values()), "") or next(
        (r.value for r in world.dns.query(next(iter(refused)).rpartition("@")[2], "MX")), ""
    )
    dsn = build_dsn(entry, refused, reporting_mta=HOST_A, remote_mta=remote, arrival=time.time())
    tap = Tap(world.sink, PANEL_RELAY, "mta-a", "mta-a", "DSN", None)
    text, detail = note(
        (
            "dsn.create",
            {"sender": entry.mail_from, "rcpts": ", ".join(refused), "octets": len(dsn)},
        )
    )
    tap.note(text, "dsn.create", dst="mda-a", detail=detail)
    bounce = QueuedMail(new_queue_id(), "", (entry.mail_from,), dsn)
    if "lmtp-a" in world.ports and entry.mail_from.endswith("@a.example"):
        # The sender is local to mail.a.example: its MDA takes the bounce directly.
        await deliver_lmtp(world.ctx, LOOPBACK, world.ports["lmtp-a"], bounce, lhlo=HOST_A)
    else:
        world.outbound.put("", [entry.mail_from], dsn, bounce.qid)

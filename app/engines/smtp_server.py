"""Start the aiosmtpd-based listeners (submission, relay MX, LMTP) on loopback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.engines.base import Endpoint, EngineContext
from app.engines.smtp_tap import TappedLMTP, TappedSMTP

# aiosmtpd logs every peer at INFO and warns about its own deprecated attribute on each
# AUTH; the event stream already records every line, so only its errors are kept.
logging.getLogger("mail.log").setLevel(logging.ERROR)


def handshake_timeout(endpoint: Endpoint) -> float:
    """The listener's TLS handshake limit (implicit TLS here, STARTTLS in the tap), as
    the POP3/IMAP listeners have it (base.py)."""
    return min(endpoint.timeout(False), endpoint.tls_handshake_timeout)


MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # 10 MiB; larger DATA gets 552 (RFC 5321 §4.5.3.1.7)


async def start_smtp_server(
    ctx: EngineContext,
    endpoint: Endpoint,
    policy: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    require_auth: bool = False,
    lmtp: bool = False,
    path: str | None = None,
) -> asyncio.Server:
    """Listen on host:port, or on the Unix socket `path` (as an MDA's LMTP often does)."""
    loop = asyncio.get_running_loop()
    implicit = endpoint.implicit_tls
    authenticator = getattr(policy, "authenticator", None)

    def factory() -> asyncio.Protocol:
        cls = TappedLMTP if lmtp else TappedSMTP
        kwargs: dict[str, Any] = dict(
            endpoint=endpoint,
            sink=ctx.sink,
            guard=ctx.guard,
            hostname=endpoint.hostname,
            ident="MailFlow Lab",
            data_size_limit=MAX_MESSAGE_SIZE,
            decode_data=False,
            timeout=endpoint.idle_timeout,
            # With implicit TLS the whole session is encrypted, so STARTTLS is not offered.
            tls_context=None if (implicit or lmtp) else ctx.tls.server_context,
            require_starttls=False,
            auth_required=require_auth,
            auth_require_tls=not implicit,
            authenticator=authenticator,
        )
        if authenticator is None:
            kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
            kwargs.pop("authenticator")
        return cls(policy, **kwargs)

    if path is not None:
        return await loop.create_unix_server(factory, path)
    if not implicit:
        return await loop.create_server(factory, host, port)
    # A client that starts a handshake and stalls must not hold a slot for asyncio's 60 s.
    return await loop.create_server(
        factory,
        host,
        port,
        ssl=ctx.tls.server_context,
        ssl_handshake_timeout=handshake_timeout(endpoint),
    )

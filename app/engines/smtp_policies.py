"""Lab policy for the aiosmtpd servers, as handler objects (aiosmtpd's hook style).

One class per role: who may send, which recipients exist, where accepted mail goes.
The engine (aiosmtpd) stays generic; every sandbox rule lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, AuthResult, Envelope, LoginPassword, Session

from app.engines.base import mailbox_actor
from app.engines.header_text import helo_part, printable
from app.world.accounts import Accounts
from app.world.mailstore import MailStore
from app.world.spool import QueuedMail, Spool, new_queue_id

if TYPE_CHECKING:
    from app.engines.dkim_keys import DkimKey
    from app.engines.dnsbl import Dnsbl
    from app.engines.sender_auth import SenderAuth
    from app.world.network import LabNetwork


def received_header(
    *, helo: str | None, peer_ip: str, by: str, with_: str, qid: str, rcpt: str | None
) -> bytes:
    """A trace header as RFC 5321 §4.4 describes it; each hop puts one on top. The HELO
    name and the recipient come from the client: checked, never copied raw."""
    for_part = f"\r\n\tfor <{printable(rcpt)}>" if rcpt else ""
    line = (
        f"Received: from {helo_part(helo, peer_ip)}\r\n\tby {by} (MailFlow Lab) with {with_}"
        f" id {qid}{for_part};\r\n\t{formatdate(time.time(), localtime=False)}\r\n"
    )
    return line.encode("ascii")


def body_type(envelope: Envelope) -> str:
    """The MAIL command's BODY= value ("8BITMIME" or ""), kept with the queued mail so
    the next hop declares it too (RFC 6152 §3)."""
    for option in envelope.mail_options:
        key, _, value = option.upper().partition("=")
        if key == "BODY" and value == "8BITMIME":
            return value
    return ""


def _with_protocol(session: Session, base: str) -> str:
    # RFC 3848: ESMTP, plus S when TLS was used, plus A when the client authenticated.
    if base != "ESMTP":
        return base
    suffix = ("S" if session.ssl else "") + ("A" if session.authenticated else "")
    return base + suffix


class _Handler:
    """Every policy is an aiosmtpd handler. aiosmtpd runs inspect.getmembers(handler)
    and dir(handler) for every new connection to find its handle_* and auth_* methods
    (each attribute fetched, ~50 µs per connection); they are the same for every
    instance of a class, so dir() lists only them, found once per class (as the tapped
    servers do for themselves, app/engines/smtp_tap.py)."""

    def __dir__(self) -> list[str]:
        cls = type(self)
        names = cls.__dict__.get("_handler_names")
        if names is None:
            names = [n for n in object.__dir__(self) if n.startswith(("handle_", "auth_"))]
            cls._handler_names = names  # type: ignore[attr-defined]
        return list(names)


class _Hello(_Handler):
    """The EHLO/LHLO hook of the MX and the MDA: optionally offers PIPELINING (RFC 2920)
    before the last line; the tap then answers a group of pipelined commands in one
    write (RFC 2920 §3.1 lets a server buffer its replies)."""

    pipelining = False

    def _hello_lines(self, responses: list[str]) -> list[str]:
        return responses

    async def handle_EHLO(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler that has the hook
        lines = self._hello_lines(responses)
        if not self.pipelining or not lines:
            return lines
        return [*lines[:-1], "250-PIPELINING", lines[-1]]


def _esmtp_trace(
    session: Session, envelope: Envelope, network: Any, hostname: str, qid: str
) -> bytes:
    """This hop's Received: line for mail that arrived over SMTP (MSA and MX alike)."""
    rcpt = envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None
    return received_header(
        helo=session.host_name,
        peer_ip=_simulated_ip(session, network),
        by=hostname,
        with_=_with_protocol(session, "ESMTP"),
        qid=qid,
        rcpt=rcpt,
    )


def _peer_ip(session: Session) -> str:
    peer = session.peer
    return peer[0] if isinstance(peer, tuple) else "127.0.0.1"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _simulated_ip(session: Session, network: LabNetwork | None) -> str:
    """The peer's address in the simulated world (what SPF and relay rules judge)."""
    ip = _peer_ip(session)
    return network.simulated_peer(ip) if network is not None else ip


def _wire_tap(server: Any) -> Any:
    wire = getattr(server, "wire", None)
    return wire.tap if wire is not None else None


class SubmissionPolicy(_Handler):
    """The MSA (RFC 6409): authenticated users only; queue for the relaying MTA."""

    def __init__(
        self,
        accounts: Accounts,
        outbound: Spool,
        hostname: str,
        on_queued: Callable[[QueuedMail], None] | None = None,
        *,
        signer: DkimKey | None = None,
        network: LabNetwork | None = None,
    ) -> None:
        self.accounts = accounts
        self.outbound = outbound
        self.hostname = hostname
        self.on_queued = on_queued
        self.signer = signer  # the domain's DKIM key: the MSA signs what it accepts
        self.network = network

    def authenticator(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if self.accounts.check(user, password):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.accounts.is_lab_domain(address):
            return (
                f"550 5.7.1 <{address}>: the sandbox delivers only to lab domains "
                "(a.example, b.example)"
            )
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        qid = new_queue_id()
        trace = _esmtp_trace(session, envelope, self.network, self.hostname, qid)
        content = envelope.original_content or b""
        if self.signer is not None and _domain(envelope.mail_from or "") == self.signer.domain:
            signature = self.signer.sign(content)
            content = signature + content
            tap = _wire_tap(server)
            if tap is not None:
                tap.note(signature.decode().rstrip(), "dkim.sign", dst=tap.server_actor)
        entry = QueuedMail(
            qid,
            envelope.mail_from or "",
            tuple(envelope.rcpt_tos),
            trace + content,
            body_type(envelope),
        )
        await self.outbound.put_async(entry)
        if self.on_queued:
            self.on_queued(entry)
        return f"250 2.0.0 Ok: queued as {qid}"


class InboundPolicy(_Hello):
    """An MTA on port 25: accepts mail for its own domains only (no open relay)."""

    def __init__(
        self,
        accounts: Accounts,
        local_domains: set[str],
        inbound: Spool,
        hostname: str,
        on_queued: Callable[[QueuedMail], None] | None = None,
        *,
        network: LabNetwork | None = None,
        sender_auth: SenderAuth | None = None,
        relay_allowed: Callable[[str], bool] | None = None,
        outbound: Spool | None = None,
        pipelining: bool = False,
        dnsbl: Dnsbl | None = None,
    ) -> None:
        self.accounts = accounts
        self.pipelining = pipelining  # offer RFC 2920 PIPELINING (the lab's own MX)
        self.dnsbl = dnsbl  # refuse clients a DNS blocklist lists (RFC 5782)
        self.local_domains = local_domains
        self.inbound = inbound
        self.hostname = hostname
        self.on_queued = on_queued
        self.network = network
        self.sender_auth = sender_auth  # SPF/DKIM/DMARC at end of DATA when set
        # POP before SMTP: whether this (simulated) client IP may relay right now.
        self.relay_allowed = relay_allowed
        self.outbound = outbound  # where relayed mail waits for the relaying MTA

    def _hello_lines(self, responses: list[str]) -> list[str]:
        # An MX takes no logins; aiosmtpd would still print an empty "250-AUTH ".
        return [r for r in responses if r.strip() != "250-AUTH"]

    async def handle_MAIL(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> Any:
        # A listed client is refused before its mail is taken (Postfix: reject_rbl_client
        # among the sender restrictions). MISSING lets aiosmtpd accept as it always does.
        if self.dnsbl is not None:
            refusal = self.dnsbl.refusal(_simulated_ip(session, self.network))
            if refusal is not None:
                return refusal
        return MISSING

    async def handle_RCPT(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if _domain(address) not in self.local_domains:
            client_ip = _simulated_ip(session, self.network)
            if (
                self.relay_allowed is not None
                and self.outbound is not None
                and self.relay_allowed(client_ip)
            ):
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 Ok"
            # Not ours: relaying it for a stranger would make us an open relay.
            return f"554 5.7.1 <{address}>: Relay access denied"
        if not self.accounts.exists(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        qid = new_queue_id()
        trace = _esmtp_trace(session, envelope, self.network, self.hostname, qid)
        content = envelope.original_content or b""
        if self.sender_auth is not None:
            tap = _wire_tap(server)
            verdict = self.sender_auth.check(
                tap, _simulated_ip(session, self.network), envelope.mail_from or "", content
            )
            if verdict.reject is not None:
                wire = getattr(server, "wire", None)
                if wire is not None:
                    # Explained as what it is (a DMARC policy), not as any 550 after DATA.
                    wire.explain_next_reply(verdict.reject_key)
                return verdict.reject
            content = verdict.header + content
        local = [r for r in envelope.rcpt_tos if _domain(r) in self.local_domains]
        remote = [r for r in envelope.rcpt_tos if _domain(r) not in self.local_domains]
        sender = envelope.mail_from or ""
        body = body_type(envelope)
        if remote and self.outbound is not None:
            await self.outbound.put_async(
                QueuedMail(qid, sender, tuple(remote), trace + content, body)
            )
        if local:
            entry = QueuedMail(qid, sender, tuple(local), trace + content, body)
            await self.inbound.put_async(entry)
            if self.on_queued:
                self.on_queued(entry)
        return f"250 2.0.0 Ok: queued as {qid}"


class DeliveryPolicy(_Hello):
    """The MDA behind LMTP (RFC 2033): writes each recipient's copy into its Maildir."""

    def __init__(
        self,
        accounts: Accounts,
        store: MailStore,
        hostname: str,
        on_delivered: Callable[[str], None] | None = None,
        *,
        pipelining: bool = False,
    ) -> None:
        self.accounts = accounts
        self.store = store
        self.hostname = hostname
        self.on_delivered = on_delivered
        self.pipelining = pipelining

    async def handle_RCPT(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.accounts.exists(address):
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        replies = []
        content = envelope.original_content or b""
        # aiosmtpd keeps the null reverse path of a bounce as "<>" (RFC 5321 §4.5.5).
        sender = printable((envelope.mail_from or "").strip("<>"))
        for rcpt in envelope.rcpt_tos:
            qid = new_queue_id()
            # Final delivery records the envelope sender as Return-Path (RFC 5321 §4.4).
            head = f"Return-Path: <{sender}>\r\nDelivered-To: {printable(rcpt)}\r\n".encode()
            trace = received_header(
                helo=session.host_name,
                peer_ip=_peer_ip(session),
                by=self.hostname,
                with_="LMTP",
                qid=qid,
                rcpt=rcpt,
            )
            try:
                relpath = await self.store.deliver_async(rcpt, head + trace + content)
            except OSError:
                # This mailbox could not be written now: only its recipient is deferred,
                # the others keep their copies (RFC 2033 §4.2).
                replies.append(f"451 4.3.0 <{rcpt}> {qid} Could not save, try again later")
                continue
            wire = getattr(server, "wire", None)
            if wire is not None:
                wire.tap.note(
                    relpath,
                    "maildir.deliver",
                    src=wire.tap.server_actor,
                    dst=mailbox_actor(rcpt),
                    protocol="MAILDIR",
                    detail={"mailbox": rcpt},
                )
            if self.on_delivered:
                self.on_delivered(rcpt)
            # LMTP answers DATA once per recipient (RFC 2033 §4.2).
            replies.append(f"250 2.0.0 <{rcpt}> {qid} Saved")
        return "\r\n".join(replies)

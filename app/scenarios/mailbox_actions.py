"""The receiving MUA's side: POP3 and IMAP sessions as a mail program runs them,
with Python's own poplib and imaplib (in a worker thread, since they block).

Options cover what the exam scenarios contrast: leave mail on the server (no DELE,
UIDL to skip what a device already has), APOP versus USER/PASS, STLS/STARTTLS
versus implicit TLS (995, 993), two devices on one IMAP mailbox, IDLE push.
"""

from __future__ import annotations

import asyncio
import imaplib
import poplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from app.sandbox import Sandbox
from app.scenarios.context import RunContext

CLIENT_TIMEOUT = 10.0


@dataclass
class Pop3Plan:
    user: str
    password: str
    tls: str  # "stls", "implicit" or "none"
    login: str  # "user" or "apop"
    delete: bool
    keep_uidls: set[str] | None  # None: not tracking; else the UIDLs this device has
    retrieve: bool = True
    fetched: list[bytes] = field(default_factory=list)


class _BoundPOP3(poplib.POP3):
    """poplib connecting from a chosen local address (a simulated host's address)."""

    def __init__(self, host: str, port: int, bind: tuple[str, int]) -> None:
        self._bind = bind
        super().__init__(host, port, timeout=CLIENT_TIMEOUT)

    def _create_socket(self, timeout: float) -> socket.socket:  # type: ignore[override]
        return socket.create_connection((self.host, self.port), timeout, source_address=self._bind)


def _pop3_session(
    host: str, port: int, ctx: ssl.SSLContext, plan: Pop3Plan, bind: tuple[str, int] | None
) -> None:
    if plan.tls == "implicit":
        pop: poplib.POP3 = poplib.POP3_SSL(host, port, context=ctx, timeout=CLIENT_TIMEOUT)
    elif bind is not None:
        pop = _BoundPOP3(host, port, bind)
    else:
        pop = poplib.POP3(host, port, timeout=CLIENT_TIMEOUT)
    try:
        if plan.tls == "stls":
            pop.stls(context=ctx)
            # RFC 2595 §4: forget the list heard in clear and ask again inside TLS
            # (a man in the middle may have cut STLS or SASL from it); only now does
            # the server list USER and SASL PLAIN.
            pop.capa()
        if plan.login == "apop":
            pop.apop(plan.user, plan.password)
        else:
            pop.user(plan.user)
            pop.pass_(plan.password)
        count, _size = pop.stat()
        wanted = list(range(1, count + 1))
        if plan.keep_uidls is not None:
            # "Leave on server": UIDL tells which messages this device already has.
            _resp, lines, _octets = pop.uidl()
            wanted = []
            for line in lines:
                num, uid = line.decode().split()
                if uid not in plan.keep_uidls:
                    wanted.append(int(num))
                    plan.keep_uidls.add(uid)
        elif plan.retrieve:
            pop.list()
        if not plan.retrieve:
            wanted = []
        for n in wanted:
            _resp, lines, _octets = pop.retr(n)
            plan.fetched.append(b"\r\n".join(lines) + b"\r\n")
            if plan.delete:
                pop.dele(n)
    finally:
        pop.quit()


async def pop3_fetch(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """Download over POP3. server (pop3-b, pop3s-b, pop3-a), actor (which device),
    tls (stls | implicit | none), login (user | apop), delete, keep (track UIDLs),
    retrieve (false: log in and look only), source (the client's simulated IP)."""
    server = params.get("server", "pop3-b")
    endpoint = world.endpoints[server]
    actor = params.get("actor", endpoint.client_actor)
    user = params.get("user", "bob@b.example")
    keep = bool(params.get("keep", False))
    plan = Pop3Plan(
        user=user,
        password=params.get("password") or world.accounts.password(user) or "",
        tls=params.get("tls", "implicit" if endpoint.implicit_tls else "stls"),
        login=params.get("login", "user"),
        delete=bool(params.get("delete", not keep)),
        keep_uidls=run.uidls_seen.setdefault(actor, set()) if keep else None,
        retrieve=bool(params.get("retrieve", True)),
    )
    source = params.get("source")
    host, port = world.route(server, source=source, actor=actor)
    bind = world.source(source) if source else None
    endpoint.expect_client(actor, params.get("panel"))
    await asyncio.to_thread(_pop3_session, host, port, world.tls.client_context, plan, bind)
    run.fetched.setdefault(actor, []).extend(plan.fetched)


# -- IMAP ---------------------------------------------------------------------------
@dataclass
class ImapPlan:
    user: str
    password: str
    tls: str  # "starttls", "implicit"
    read: str  # "peek+store" (PEEK then STORE \Seen), "fetch" (BODY[] sets \Seen), "flags"
    messages: str  # "1", "1:*", "last"
    delete: bool  # STORE +FLAGS (\Deleted) then EXPUNGE
    idle: bool  # stay in IDLE until the server pushes EXISTS
    fetched: list[bytes] = field(default_factory=list)
    idling: threading.Event = field(default_factory=threading.Event)


def _open_imap(host: str, port: int, ctx: ssl.SSLContext, plan: ImapPlan) -> imaplib.IMAP4:
    if plan.tls == "implicit":
        return imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=CLIENT_TIMEOUT)
    imap = imaplib.IMAP4(host, port, timeout=CLIENT_TIMEOUT)
    imap.starttls(ssl_context=ctx)
    return imap


def _read(imap: imaplib.IMAP4, plan: ImapPlan, which: str, how: str | None = None) -> None:
    how = how or plan.read
    if how == "flags":
        imap.fetch(which, "(FLAGS)")
        return
    part = "BODY.PEEK[]" if how == "peek+store" else "BODY[]"
    _typ, data = imap.fetch(which, f"(FLAGS {part})")
    for item in data:
        if isinstance(item, tuple):
            plan.fetched.append(item[1])
    if how == "peek+store":
        # PEEK reads without side effects, so marking it read is this explicit STORE.
        imap.store(which, "+FLAGS", "(\\Seen)")


def _idle_until_exists(imap: imaplib.IMAP4, plan: ImapPlan) -> str | None:
    """RFC 2177 IDLE. imaplib (3.11) has no IDLE, so the command goes through its
    tag and response reader; returns the sequence number of the pushed message."""
    tag = imap._new_tag()  # type: ignore[attr-defined]
    imap.send(tag + b" IDLE\r\n")
    imap._get_response()  # type: ignore[attr-defined]  # "+ idling"
    plan.idling.set()
    while True:
        imap._get_response()  # type: ignore[attr-defined]
        exists = imap.untagged_responses.pop("EXISTS", None)
        if exists:
            imap.send(b"DONE\r\n")
            imap._get_tagged_response(tag)  # type: ignore[attr-defined]
            return exists[-1].decode()


def _imap_session(host: str, port: int, ctx: ssl.SSLContext, plan: ImapPlan) -> None:
    try:
        _imap_steps(_open_imap(host, port, ctx, plan), plan)
    finally:
        plan.idling.set()  # whatever happened, nobody waits for "+ idling" any more


def _imap_steps(imap: imaplib.IMAP4, plan: ImapPlan) -> None:
    try:
        imap.login(plan.user, plan.password)
        _typ, data = imap.select("INBOX")
        count = int(data[0] or 0)
        if count:
            which = {"last": str(count), "all": "1:*"}.get(plan.messages, plan.messages)
            _read(imap, plan, which)
        if plan.idle:
            pushed = _idle_until_exists(imap, plan)
            if pushed:
                _read(imap, plan, pushed, "fetch")  # the new mail: read it, which sets \Seen
        if plan.delete:
            imap.store("1", "+FLAGS", "(\\Deleted)")
            imap.expunge()
    finally:
        imap.logout()


def _imap_plan(world: Sandbox, params: dict[str, Any], implicit: bool) -> ImapPlan:
    user = params.get("user", "bob@b.example")
    return ImapPlan(
        user=user,
        password=params.get("password") or world.accounts.password(user) or "",
        tls=params.get("tls", "implicit" if implicit else "starttls"),
        read=params.get("read", "peek+store"),
        messages=str(params.get("messages", "1")),
        delete=bool(params.get("delete", False)),
        idle=bool(params.get("idle", False)),
    )


async def imap_fetch(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """Read over IMAP; the mail stays on the server. server (imap-b, imaps-b, imap-a),
    actor, read (peek+store | fetch | flags), messages, delete, idle (see imap_idle)."""
    server = params.get("server", "imap-b")
    endpoint = world.endpoints[server]
    actor = params.get("actor", endpoint.client_actor)
    plan = _imap_plan(world, params, endpoint.implicit_tls)
    host, port = world.route(server)
    endpoint.expect_client(actor, params.get("panel"))
    await asyncio.to_thread(_imap_session, host, port, world.tls.client_context, plan)
    run.fetched.setdefault(actor, []).extend(plan.fetched)


async def imap_idle(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    """A device logs in, reads, and waits in IDLE; the run goes on while it waits.
    `imap_idle_end` collects it after the server pushed the new message."""
    server = params.get("server", "imap-b")
    endpoint = world.endpoints[server]
    actor = params.get("actor", endpoint.client_actor)
    plan = _imap_plan(world, {**params, "idle": True}, endpoint.implicit_tls)
    host, port = world.route(server)
    endpoint.expect_client(actor, params.get("panel"))
    future = asyncio.ensure_future(
        asyncio.to_thread(_imap_session, host, port, world.tls.client_context, plan)
    )
    run.background[actor] = future
    run.notes[f"imap-plan:{actor}"] = plan
    run.hold(server, +1)
    # Go on only once the server said "+ idling" (or the session already ended).
    await asyncio.to_thread(plan.idling.wait, CLIENT_TIMEOUT)
    if future.done():
        run.hold(server, -1)
        future.result()


async def imap_idle_end(world: Sandbox, params: dict[str, Any], run: RunContext) -> None:
    server = params.get("server", "imap-b")
    actor = params.get("actor", world.endpoints[server].client_actor)
    future = run.background.pop(actor)
    try:
        await asyncio.wait_for(future, CLIENT_TIMEOUT)
    finally:
        run.hold(server, -1)
    plan = run.notes.pop(f"imap-plan:{actor}")
    run.fetched.setdefault(actor, []).extend(plan.fetched)

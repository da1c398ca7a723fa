"""The sandbox's topology, described once: every listener, its host, role and actors.

Pure data (no engine is imported here): the scenario world (app/sandbox.py), the lab's
public listeners (app/lab/world.py) and the lab's internal hops (app/lab/inner.py) all
take their listeners from these tables, and one builder (`app.sandbox.start_listener`)
turns a description into a running engine. A listener's `role` says which policy it
runs: "submission" (MSA: AUTH required, queues outbound), "inbound" (MTA on 25 for
`domain`), "delivery" (MDA behind LMTP for `domain`), "pop3", "imap".
"""

from __future__ import annotations

from dataclasses import dataclass

from app.events import PANEL_DELIVER, PANEL_FETCH, PANEL_RELAY, PANEL_SUBMIT

HOST_A = "mail.a.example"
HOST_B = "mx.b.example"
HOST_B2 = "mx2.b.example"
LAB_CLIENT = "lab-client"  # whoever connects to a lab port: the learner's own program


@dataclass(frozen=True)
class Listener:
    name: str
    role: str  # submission | inbound | delivery | pop3 | imap
    panel: int
    protocol: str  # SMTP, LMTP, POP3, IMAP
    standard_port: int  # the port this listener plays (587, 25, 110, ...)
    server_actor: str
    client_actor: str
    hostname: str
    domain: str = ""  # the mail domain an inbound or delivery listener serves
    implicit_tls: bool = False  # RFC 8314: encrypted from the first byte
    idle_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7; POP3/IMAP below


def _l(
    name: str, role: str, panel: int, proto: str, port: int, server: str, client: str,
    host: str, domain: str = "", tls: bool = False, idle: float = 300.0,
) -> Listener:  # fmt: skip
    return Listener(name, role, panel, proto, port, server, client, host, domain, tls, idle)


# The scenario world: five listeners by default, the rest when a scenario asks by name.
SCENARIO_DEFAULT = (
    _l("submission", "submission", PANEL_SUBMIT, "SMTP", 587, "msa-a", "mua-alice", HOST_A),
    _l("mx-b", "inbound", PANEL_RELAY, "SMTP", 25, "mta-b", "mta-a", HOST_B, "b.example"),
    _l("lmtp-b", "delivery", PANEL_DELIVER, "LMTP", 24, "mda-b", "mta-b", "mda.b.example",
       "b.example"),
    _l("pop3-b", "pop3", PANEL_FETCH, "POP3", 110, "pop3-b", "mua-bob", HOST_B),
    _l("imap-b", "imap", PANEL_FETCH, "IMAP", 143, "imap-b", "mua-bob", HOST_B),
)  # fmt: skip
SCENARIO_EXTRA = (
    # mail.a.example also receives on 25: bounces, strangers asking it to relay.
    _l("mx-a", "inbound", PANEL_RELAY, "SMTP", 25, "mta-a", "host-x", HOST_A, "a.example"),
    _l("lmtp-a", "delivery", PANEL_DELIVER, "LMTP", 24, "mda-a", "mta-a", "mda.a.example",
       "a.example"),
    _l("pop3-a", "pop3", PANEL_FETCH, "POP3", 110, "pop3-a", "mua-alice", HOST_A),
    _l("imap-a", "imap", PANEL_FETCH, "IMAP", 143, "imap-a", "mua-alice", HOST_A),
    _l("submissions", "submission", PANEL_SUBMIT, "SMTP", 465, "msa-a", "mua-alice", HOST_A,
       tls=True),
    _l("pop3s-b", "pop3", PANEL_FETCH, "POP3", 995, "pop3-b", "mua-bob", HOST_B, tls=True),
    _l("imaps-b", "imap", PANEL_FETCH, "IMAP", 993, "imap-b", "mua-bob", HOST_B, tls=True),
    # The backup MX (preference 20 in the zone).
    _l("mx2-b", "inbound", PANEL_RELAY, "SMTP", 25, "mta-b2", "mta-a", HOST_B2, "b.example"),
)  # fmt: skip

# The lab's public listeners, on the standard port plus MAILFLOW_LAB_OFFSET. RFC 1939 §3
# asks for at least 10 minutes of POP3 idle time, RFC 3501 §5.4 30 for IMAP.
LAB_PUBLIC = (
    _l("smtp", "inbound", PANEL_RELAY, "SMTP", 25, "mta-b", LAB_CLIENT, HOST_B, "b.example"),
    _l("submission", "submission", PANEL_SUBMIT, "SMTP", 587, "msa-a", LAB_CLIENT, HOST_A),
    _l("submissions", "submission", PANEL_SUBMIT, "SMTP", 465, "msa-a", LAB_CLIENT, HOST_A,
       tls=True),
    _l("pop3", "pop3", PANEL_FETCH, "POP3", 110, "pop3-b", LAB_CLIENT, HOST_B, idle=600.0),
    _l("pop3s", "pop3", PANEL_FETCH, "POP3", 995, "pop3-b", LAB_CLIENT, HOST_B, tls=True,
       idle=600.0),
    _l("imap", "imap", PANEL_FETCH, "IMAP", 143, "imap-b", LAB_CLIENT, HOST_B, idle=1800.0),
    _l("imaps", "imap", PANEL_FETCH, "IMAP", 993, "imap-b", LAB_CLIENT, HOST_B, tls=True,
       idle=1800.0),
)  # fmt: skip

# The lab's hops inside the sandbox (the lab process's child): the MX of each domain on
# an ephemeral loopback port, the MDA on a Unix socket.
LAB_MDA_HOST = "mda.lab.example"
LAB_INTERNAL = (
    _l("mx-b", "inbound", PANEL_RELAY, "SMTP", 25, "mta-b", "mta-a", HOST_B, "b.example"),
    _l("mx-a", "inbound", PANEL_RELAY, "SMTP", 25, "mta-a-in", "mta-a", HOST_A, "a.example"),
    _l("lmtp", "delivery", PANEL_DELIVER, "LMTP", 24, "mda-b", "mta-b", LAB_MDA_HOST),
)  # fmt: skip


def by_name(listeners: tuple[Listener, ...]) -> dict[str, Listener]:
    return {listener.name: listener for listener in listeners}


class PortInUse(RuntimeError):
    """A lab port is taken; the message names it and the setting to change.

    Here, with the ports, so the web (app/lab/control.py) can name it without importing
    the lab world and its engines."""


def lab_ports(offset: int) -> dict[str, int]:
    """The lab's public ports: each standard port plus MAILFLOW_LAB_OFFSET."""
    return {listener.name: listener.standard_port + offset for listener in LAB_PUBLIC}

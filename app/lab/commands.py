"""Copy-ready commands for the /lab page, built from the ports really in use.

Each one is run as shown by tests/test_lab_commands.py, from a directory that holds
the downloaded CA certificate as mailflow-ca.pem.
"""

from __future__ import annotations

from dataclasses import dataclass

CA = "mailflow-ca.pem"
MAIL = (
    "printf 'From: alice@a.example\\r\\nTo: bob@b.example\\r\\n"
    "Subject: Hello from curl\\r\\n\\r\\nHi Bob!\\r\\n'"
)


@dataclass(frozen=True)
class Command:
    key: str  # a stable id, also the label's msgid key in the template
    tool: str
    shell: str


def commands_for(host: str, ports: dict[str, int]) -> list[Command]:
    p = ports
    return [
        Command(
            "swaks-send",
            "swaks",
            f"swaks --server {host} --port {p['submission']} --tls --tls-verify "
            f"--tls-ca-path {CA} --auth PLAIN --auth-user alice@a.example "
            f"--auth-password alice-pass --from alice@a.example --to bob@b.example",
        ),
        Command(
            "curl-send",
            "curl",
            f"{MAIL} | curl -sS --ssl-reqd --cacert {CA} smtp://{host}:{p['submission']} "
            f"-u alice@a.example:alice-pass --mail-from alice@a.example "
            f"--mail-rcpt bob@b.example -T -",
        ),
        Command(
            "curl-send-smtps",
            "curl",
            f"{MAIL} | curl -sS --cacert {CA} smtps://{host}:{p['submissions']} "
            f"-u alice@a.example:alice-pass --mail-from alice@a.example "
            f"--mail-rcpt bob@b.example -T -",
        ),
        Command(
            "curl-pop3-list",
            "curl",
            f"curl -sS --ssl-reqd --cacert {CA} pop3://{host}:{p['pop3']}/ "
            "-u bob@b.example:bob-pass",
        ),
        Command(
            "curl-pop3s-fetch",
            "curl",
            f"curl -sS --cacert {CA} pop3s://{host}:{p['pop3s']}/1 -u bob@b.example:bob-pass",
        ),
        Command(
            "curl-imap-list",
            "curl",
            f"curl -sS --ssl-reqd --cacert {CA} 'imap://{host}:{p['imap']}/INBOX' "
            f"-u bob@b.example:bob-pass -X 'UID SEARCH ALL'",
        ),
        Command(
            "curl-imaps-fetch",
            "curl",
            f"curl -sS --cacert {CA} 'imaps://{host}:{p['imaps']}/INBOX;MAILINDEX=1' "
            f"-u bob@b.example:bob-pass",
        ),
        Command(
            "python-send",
            "python3",
            "python3 - <<'EOF'\n"
            "import smtplib, ssl\n"
            f"ctx = ssl.create_default_context(cafile='{CA}')\n"
            f"with smtplib.SMTP('{host}', {p['submission']}) as s:\n"
            "    s.starttls(context=ctx)\n"
            "    s.login('alice@a.example', 'alice-pass')\n"
            "    s.sendmail('alice@a.example', ['bob@b.example'],\n"
            "               'Subject: Hello from Python\\r\\n\\r\\nHi Bob!\\r\\n')\n"
            "EOF",
        ),
        Command(
            "python-read",
            "python3",
            "python3 - <<'EOF'\n"
            "import imaplib, ssl\n"
            f"ctx = ssl.create_default_context(cafile='{CA}')\n"
            f"with imaplib.IMAP4_SSL('{host}', {p['imaps']}, ssl_context=ctx) as m:\n"
            "    m.login('bob@b.example', 'bob-pass')\n"
            "    m.select('INBOX')\n"
            "    typ, data = m.search(None, 'ALL')\n"
            "    print('messages:', data[0].decode())\n"
            "EOF",
        ),
    ]


# -- settings for programs that keep a configuration ----------------------------------
# fetchmail, mbsync and offlineimap check the certificate against the host name they
# were given and do not accept an IP address there, so these use "localhost" (the
# lab certificate names it, app/engines/tls.py). Each file is run as shown by
# tests/test_lab_settings.py.

LOOPBACK_NAMES = frozenset({"127.0.0.1", "::1", "0.0.0.0", "::", "", "localhost"})


def settings_host(host: str) -> str:
    """The name a client should use: "localhost" while the lab listens on loopback."""
    return "localhost" if host in LOOPBACK_NAMES else host


@dataclass(frozen=True)
class ConfigFile:
    key: str  # a stable id, also the label's key in the template
    tool: str
    filename: str  # save the text under this name, next to mailflow-ca.pem
    text: str
    run: str  # the command that uses it, run in that same folder


def config_files(host: str, ports: dict[str, int]) -> list[ConfigFile]:
    name = settings_host(host)
    fetchmailrc = (
        "# MailFlow Lab: bob's mail over POP3, STLS on the lab's port 110.\n"
        "# fetchmail downloads, then DELE + QUIT remove it from the server.\n"
        f"poll {name} protocol POP3 port {ports['pop3']}\n"
        '  user "bob@b.example" password "bob-pass"\n'
        f'  sslproto "tls1.2+" sslcertck sslcertfile "{CA}"\n'
        '  mda "cat >> fetched-mail.txt"\n'
    )
    mbsyncrc = (
        "# MailFlow Lab: bob's INBOX over IMAPS into the Maildir ./lab-mail/INBOX\n"
        "IMAPAccount lab\n"
        f"Host {name}\n"
        f"Port {ports['imaps']}\n"
        "User bob@b.example\n"
        "Pass bob-pass\n"
        "# isync 1.5 and later call this TLSType\n"
        "SSLType IMAPS\n"
        f"CertificateFile {CA}\n"
        "\n"
        "IMAPStore lab-remote\n"
        "Account lab\n"
        "\n"
        "MaildirStore lab-local\n"
        "Path ./lab-mail/\n"
        "Inbox ./lab-mail/INBOX\n"
        "\n"
        "Channel lab\n"
        "Far :lab-remote:\n"
        "Near :lab-local:\n"
        "Patterns INBOX\n"
        "Create Near\n"
        "Sync Pull\n"
        "SyncState *\n"
    )
    return [
        ConfigFile(
            "fetchmail",
            "fetchmail",
            "mailflow.fetchmailrc",
            fetchmailrc,
            # fetchmail refuses a file others can read: it holds a password.
            "chmod 600 mailflow.fetchmailrc && fetchmail -f mailflow.fetchmailrc",
        ),
        ConfigFile(
            "mbsync",
            "mbsync (isync)",
            "mailflow.mbsyncrc",
            mbsyncrc,
            "mkdir -p lab-mail && mbsync -c mailflow.mbsyncrc lab",
        ),
    ]


@dataclass(frozen=True)
class AppServer:
    """One row of a mail app's manual set-up (Thunderbird's names for the fields)."""

    role: str  # "incoming" or "outgoing"
    protocol: str  # IMAP, POP3, SMTP
    host: str
    port: int
    security: str  # Thunderbird's "Connection security"
    auth: str  # Thunderbird's "Authentication method"
    user: str


def mail_app_servers(host: str, ports: dict[str, int]) -> list[AppServer]:
    # Implicit TLS everywhere, as RFC 8314 recommends for mail apps.
    name, user = settings_host(host), "bob@b.example"
    return [
        AppServer("incoming", "IMAP", name, ports["imaps"], "SSL/TLS", "normal", user),
        AppServer("incoming", "POP3", name, ports["pop3s"], "SSL/TLS", "normal", user),
        AppServer("outgoing", "SMTP", name, ports["submissions"], "SSL/TLS", "normal", user),
    ]

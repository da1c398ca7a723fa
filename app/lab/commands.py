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

"""IMAP header FETCH over 1,000 messages: our server (the real app, lab mode, the event
loop that also serves the web pages) against Debian's Dovecot (dovecot-imapd), same
raw-socket client, same messages, STARTTLS + LOGIN on both, alternating rounds; the
verdict is the median of the rounds' ratios. Then: two clients loop `SEARCH TEXT`
over the same folder and 20 clients send mail through the lab while a third measures
the latency of the web's `/healthz` and `/flow/basic-pop3`.

    apt-get install -y dovecot-imapd   # once; the benchmark starts its own Dovecot
    .venv/bin/python bench/bench_imap_fetch.py --messages 1000 --rounds 7

Dovecot runs from a temporary directory with its own minimal configuration (its own
base_dir, a passwd-file user, maildir in the temporary directory, loopback on a free
port, the lab certificate); the system's service is never used. Afterwards nothing
may listen on port 143.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from email.utils import formatdate
from pathlib import Path

from bench_pipeline import free_lab_offset
from common import free_port, percentile, start_process, wait_for_port

from app.engines.tls import LabTLS
from app.world.mailstore import MailStore

USER, PASSWORD = "bob@b.example", "bob-pass"
FETCH = b"UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
MAIL_UID = 65534  # Dovecot refuses mail access as root: its mail belongs to nobody


def message(i: int) -> bytes:
    """A plausible mail: trace and authentication headers, a few KiB of text."""
    date = formatdate(1_790_000_000 + i * 37, localtime=False)
    head = (
        f"Return-Path: <alice{i % 7}@a.example>\r\n"
        f"Received: from mx.a.example (mx.a.example [192.0.2.25])\r\n"
        f"\tby mx.b.example with ESMTPS id {i:08X}\r\n\tfor <bob@b.example>; {date}\r\n"
        f"Received: from pc.a.example by msa.a.example with ESMTPSA; {date}\r\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; d=a.example; s=lab; h=from:to:subject:date;\r\n"
        f"\tbh={'A' * 43}=;\r\n\tb={'B' * 76}\r\n\t {'C' * 76}\r\n\t {'D' * 40}\r\n"
        f"Authentication-Results: mx.b.example; spf=pass smtp.mailfrom=a.example;\r\n"
        f"\tdkim=pass header.d=a.example; dmarc=pass header.from=a.example\r\n"
        f'From: "Alice {i % 7}" <alice{i % 7}@a.example>\r\n'
        f"To: Bob <bob@b.example>\r\n"
        f"Subject: Report {i}: weekly numbers for project {i % 13}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{i}.bench@a.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = f"Line of the weekly report number {i}, nothing unusual in it at all.\r\n"
    return head.encode() + (line * 40).encode()


# -- a raw IMAP client ------------------------------------------------------------------
class Client:
    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.n = 0
        self._line()  # greeting
        self.command(b"STARTTLS")
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.command(f"LOGIN {USER} {PASSWORD}".encode())
        self.command(b"SELECT INBOX")

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def command(self, text: bytes) -> bytes:
        """Send one command; return everything up to and including its tagged reply."""
        self.n += 1
        tag = b"b%d " % self.n
        self.sock.sendall(tag + text + b"\r\n")
        data = self.buf
        self.buf = b""
        while True:
            end = data.endswith(b"\r\n")
            start = data.rfind(b"\r\n", 0, len(data) - 2) + 2 if end else -1
            start = 0 if start == 1 else start  # the reply's only line
            if end and data[start:].startswith(tag):
                if not data[start:].startswith(tag + b"OK"):
                    raise RuntimeError(data[start:].decode(errors="replace"))
                return data
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed")
            data += chunk

    def close(self) -> None:
        self.command(b"LOGOUT")
        self.sock.close()


def timed_fetch(client: Client, expect: int) -> float:
    started = time.perf_counter()
    data = client.command(FETCH)
    took = time.perf_counter() - started
    got = data.count(b" FETCH (")
    if got != expect:
        raise RuntimeError(f"{got} FETCH lines, expected {expect}")
    return took


# -- Dovecot, started here ------------------------------------------------------------------
DOVECOT_CONF = """\
base_dir = {tmp}/run
state_dir = {tmp}/state
instance_name = mailflow-bench
log_path = {tmp}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={tmp}/home/%u
}}
mail_location = maildir:{tmp}/dmail/%u
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def start_dovecot(tmp: Path, tls_dir: Path, port: int) -> subprocess.Popen:
    conf = tmp / "dovecot.conf"
    (tmp / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    for d in ("run", "state", "home"):
        (tmp / d).mkdir(exist_ok=True)
    # Login processes run as dovenull, mail processes as nobody: let them through.
    for d in (tmp, *tmp.parents):
        if str(d).startswith(tempfile.gettempdir()) and d != Path(tempfile.gettempdir()):
            os.chmod(d, 0o755)
    for path in [tmp / "dmail", tmp / "home", *(tmp / "dmail").rglob("*")]:
        os.chown(path, MAIL_UID, MAIL_UID)
    conf.write_text(
        DOVECOT_CONF.format(
            tmp=tmp,
            cert=tls_dir / "server.pem",
            key=tls_dir / "server.key",
            uid=MAIL_UID,
            port=port,
        )
    )
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)])
    wait_for_port(port)
    return proc


def stop_service_on_143() -> None:
    """The Debian package may have started the system's Dovecot: stop it for good."""
    for cmd in (["service", "dovecot", "stop"], ["update-rc.d", "dovecot", "disable"]):
        if shutil.which(cmd[0]):
            subprocess.run(cmd, capture_output=True, check=False)


def listening_on(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- SEARCH TEXT and mail load against the web pages ----------------------------------------------
def pages_under_load(
    web: int, imap: int, submission: int, ctx: ssl.SSLContext, seconds: float, senders: int
) -> dict:
    """Two clients loop SEARCH TEXT and `senders` clients send mail through the lab's
    submission port (STARTTLS, AUTH, one message per connection, as a mail program does)
    while a third GETs `/healthz` and `/flow/basic-pop3` in turn; before the load starts,
    the same sampling alone gives the idle figures."""
    stop = threading.Event()
    searches = [0, 0]
    sent = [0] * senders

    def searcher(n: int) -> None:
        client = Client(imap, ctx)
        while not stop.is_set():
            client.command(b'SEARCH TEXT "no such words anywhere"')
            searches[n] += 1
        client.close()

    def sender(n: int) -> None:
        while not stop.is_set():
            with smtplib.SMTP("127.0.0.1", submission, timeout=30) as c:
                c.starttls(context=ctx)
                c.login("alice@a.example", "alice-pass")
                c.sendmail("alice@a.example", [USER], message(100_000 + n))
            sent[n] += 1

    def sample(duration: float) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"/healthz": [], "/flow/basic-pop3": []}
        end = time.monotonic() + duration
        while time.monotonic() < end:
            for path, times in out.items():
                started = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{web}{path}", timeout=10) as r:
                    r.read()
                times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
        return out

    idle = sample(min(seconds, 5.0))
    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # searches and senders under way
    loaded = sample(seconds)
    stop.set()
    for t in threads:
        t.join()
    result: dict[str, object] = {
        "samples_per_page": len(loaded["/healthz"]),
        "searches_done": sum(searches),
        "mails_sent": sum(sent),
        "senders": senders,
    }
    for path in loaded:
        result[path] = {
            "idle_p95_ms": percentile(idle[path], 95),
            "p50_ms": percentile(loaded[path], 50),
            "p95_ms": percentile(loaded[path], 95),
            "max_ms": max(loaded[path]),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--search-seconds", type=float, default=15.0)
    parser.add_argument("--senders", type=int, default=20, help="clients sending mail meanwhile")
    args = parser.parse_args()
    stop_service_on_143()
    if listening_on(143):
        raise SystemExit("something listens on 143 already (a system Dovecot?): stop it first")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="mf-bench-imap-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        mails = [message(i) for i in range(args.messages)]
        ours = MailStore(data / "lab" / "mail")
        theirs = MailStore(tmp / "dmail")
        for mail in mails:
            ours.deliver(USER, mail)
            theirs.deliver(USER, mail)
        # Dovecot gets a plain Maildir: none of our bookkeeping files.
        for extra in (tmp / "dmail" / USER).glob("mailflow-*"):
            extra.unlink()
        offset = free_lab_offset()
        web = free_port()
        app = start_process(
            ["-m", "app"],
            {
                "MAILFLOW_DATA_DIR": str(data),
                "MAILFLOW_PORT": str(web),
                "MAILFLOW_LAB_OFFSET": str(offset),
            },
        )
        dovecot = None
        try:
            wait_for_port(web)
            wait_for_port(143 + offset)
            tls = LabTLS.load(data / "tls")
            ctx = tls.client_context
            dport = free_port()
            dovecot = start_dovecot(tmp, data / "tls", dport)
            our_client, their_client = Client(143 + offset, ctx), Client(dport, ctx)
            for _ in range(2):  # untimed warm-up: caches, indexes, lazy imports
                timed_fetch(our_client, args.messages)
                timed_fetch(their_client, args.messages)
            rounds = []
            for i in range(args.rounds):
                pair = [(our_client, "ours"), (their_client, "dovecot")]
                if i % 2:
                    pair.reverse()
                took = {name: timed_fetch(c, args.messages) for c, name in pair}
                rounds.append(
                    {
                        "ours_msgs_per_s": args.messages / took["ours"],
                        "dovecot_msgs_per_s": args.messages / took["dovecot"],
                        "ratio": took["dovecot"] / took["ours"],
                    }
                )
            our_client.close()
            their_client.close()
            results["fetch"] = {
                "ours_ms_median": 1000 * args.messages / statistics.median(
                    r["ours_msgs_per_s"] for r in rounds
                ),
                "ours_msgs_per_s_median": statistics.median(r["ours_msgs_per_s"] for r in rounds),
                "dovecot_msgs_per_s_median": statistics.median(
                    r["dovecot_msgs_per_s"] for r in rounds
                ),
                "ratio_median": statistics.median(r["ratio"] for r in rounds),
                "rounds": rounds,
            }
            results["pages_under_search_and_mail"] = pages_under_load(
                web, 143 + offset, 587 + offset, ctx, args.search_seconds, args.senders
            )
        finally:
            app.terminate()
            app.wait(10)
            if dovecot is not None:
                dovecot.terminate()
                dovecot.wait(10)
    results["port_143_free_afterwards"] = not listening_on(143)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

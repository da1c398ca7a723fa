"""A password typed into the lab never reaches a browser, in any form, by any path.

Real clients (smtplib, poplib, imaplib and raw lines over TLS) log in to the lab
listeners with a distinctive password in every way the lab accepts; a real websocket
client on /ws/lab collects every frame, and a late joiner collects the backlog.
"""

from __future__ import annotations

import base64
import hashlib
import imaplib
import json
import poplib
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest
from lab_server import LabServer
from websockets.sync.client import connect

USER = "bob@b.example"
PASSWORD = "Zebra7Quokka9Sunset"
PLAIN = f"\0{USER}\0{PASSWORD}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    accounts = f'[accounts]\n"{USER}" = "{PASSWORD}"\n"alice@a.example" = "alice-pass"\n'
    server = LabServer(tmp_path_factory.mktemp("secrets"), accounts).start()
    yield server
    server.stop()


def tls(lab: LabServer) -> ssl.SSLContext:
    return lab.app.state.tls.client_context


def smtp_logins(lab: LabServer) -> None:
    # AUTH PLAIN with the initial response, then with a continuation line.
    for initial in (True, False):
        with smtplib.SMTP_SSL("127.0.0.1", lab.port("submissions"), context=tls(lab)) as c:
            c.ehlo()
            c.user, c.password = USER, PASSWORD
            assert c.auth("PLAIN", c.auth_plain, initial_response_ok=initial)[0] == 235
    # AUTH LOGIN: user name and password each on a continuation line (after STARTTLS).
    with smtplib.SMTP("127.0.0.1", lab.port("submission")) as c:
        c.starttls(context=tls(lab))
        c.ehlo()
        c.user, c.password = USER, PASSWORD
        assert c.auth("LOGIN", c.auth_login, initial_response_ok=False)[0] == 235


def pop3_logins(lab: LabServer) -> str:
    pop = poplib.POP3_SSL("127.0.0.1", lab.port("pop3s"), context=tls(lab))
    pop.user(USER)
    pop.pass_(PASSWORD)
    pop.quit()
    pop = poplib.POP3_SSL("127.0.0.1", lab.port("pop3s"), context=tls(lab))
    pop.apop(USER, PASSWORD)
    digest = hashlib.md5(pop.timestamp.search(pop.welcome).group(1) + PASSWORD.encode())
    pop.quit()
    # AUTH PLAIN (RFC 5034) with an initial response, then as a continuation line.
    pop = poplib.POP3_SSL("127.0.0.1", lab.port("pop3s"), context=tls(lab))
    assert pop._shortcmd(f"AUTH PLAIN {b64(PLAIN)}").startswith(b"+OK")
    pop.quit()
    pop = poplib.POP3_SSL("127.0.0.1", lab.port("pop3s"), context=tls(lab))
    pop._putcmd("AUTH PLAIN")
    assert pop._getline()[0].startswith(b"+")
    pop._putcmd(b64(PLAIN))
    assert pop._getresp().startswith(b"+OK")
    pop.quit()
    return digest.hexdigest()


def imap_logins(lab: LabServer) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", lab.port("imaps"), ssl_context=tls(lab)) as m:
        assert m.login(USER, PASSWORD)[0] == "OK"  # the quoted form
    with imaplib.IMAP4_SSL("127.0.0.1", lab.port("imaps"), ssl_context=tls(lab)) as m:
        # AUTHENTICATE PLAIN with the response on a continuation line.
        assert m.authenticate("PLAIN", lambda _: PLAIN.encode())[0] == "OK"
    raw = socket.create_connection(("127.0.0.1", lab.port("imaps")))
    with tls(lab).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        # LOGIN with both arguments as synchronizing literals (RFC 3501 §4.3).
        s.sendall(f"a1 LOGIN {{{len(USER)}}}\r\n".encode())
        assert f.readline().startswith(b"+")
        s.sendall(f"{USER} {{{len(PASSWORD)}}}\r\n".encode())
        assert f.readline().startswith(b"+")
        s.sendall(f"{PASSWORD}\r\n".encode())
        assert re.match(rb"a1 OK", f.readline())
        s.sendall(b"a2 LOGOUT\r\n")
        while not f.readline().startswith(b"a2 "):
            pass
    raw = socket.create_connection(("127.0.0.1", lab.port("imaps")))
    with tls(lab).wrap_socket(raw, server_hostname="127.0.0.1") as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(f"b1 AUTHENTICATE PLAIN {b64(PLAIN)}\r\n".encode())  # SASL-IR (RFC 4959)
        assert f.readline().startswith(b"b1 OK")
        # A LOGIN the parser refuses still carried the password on the wire.
        s.sendall(f'b2 LOGIN "{USER}" "{PASSWORD}\r\n'.encode())
        assert f.readline().startswith(b"b2 BAD")


def marker(lab: LabServer) -> None:
    """A last session: once its EHLO shows up, every earlier line has been published."""
    with smtplib.SMTP("127.0.0.1", lab.port("smtp")) as c:
        c.ehlo("all-done.example")


def test_no_password_in_any_form_reaches_a_lab_viewer(lab: LabServer) -> None:
    frames: list[str] = []
    with connect(lab.ws) as ws:
        ws.send(json.dumps({"type": "hello", "lang": "en"}))
        frames.append(ws.recv(timeout=10))
        smtp_logins(lab)
        digest = pop3_logins(lab)
        imap_logins(lab)
        marker(lab)
        while "all-done.example" not in frames[-1]:
            frames.append(ws.recv(timeout=10))
    with connect(lab.ws) as late:  # the backlog a late joiner gets
        late.send(json.dumps({"type": "hello", "lang": "ja"}))
        frames.append(late.recv(timeout=10))
    everything = "\n".join(frames)
    events = [json.loads(f)["event"] for f in frames if json.loads(f)["type"] == "event"]
    keys = {e["key"] for e in events}
    # Every way in was really exercised.
    assert {"smtp.auth", "smtp.auth.response", "pop3.pass", "pop3.apop", "pop3.auth"} <= keys
    assert {"pop3.auth.response", "imap.login", "imap.authenticate", "imap.auth.response"} <= keys
    secrets = {
        PASSWORD,
        b64(PASSWORD),
        b64(PLAIN),
        b64(f"{USER}\0{USER}\0{PASSWORD}"),
        digest,
        base64.b64encode(PASSWORD.encode()).decode().rstrip("="),
    }
    for secret in secrets:
        assert secret not in everything, secret
    # What stays: the user name (and the lesson that Base64 is readable) and the masks.
    plain = next(e for e in events if e["key"] == "smtp.auth" and "PLAIN" in e["text"])
    assert plain["text"] == "AUTH PLAIN ****" and plain["detail"]["decoded"] == f"␀{USER}␀"
    assert any(e["text"] == "PASS ****" for e in events)
    assert any(e["text"].endswith(f"LOGIN {USER} ****") for e in events)
    assert all("****" in e["text"] for e in events if e["key"].endswith(".response"))

"""Delivery Status Notifications (RFC 3464): the bounce a sending MTA writes when
the next hop refused a recipient after the MTA had already accepted the mail.

It goes back to the envelope sender (MAIL FROM) with an empty reverse path,
MAIL FROM:<>, so that a bounce can never bounce again (RFC 5321 §4.5.5).
"""

from __future__ import annotations

import secrets
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid

from app.world.spool import QueuedMail


def _status(reply: str) -> str:
    """The enhanced status code (RFC 3463) in a reply like '550 5.1.1 <x>: ...'."""
    parts = reply.split()
    if len(parts) > 1 and parts[1].count(".") == 2 and parts[1][0] in "245":
        return parts[1]
    return f"{parts[0][0]}.0.0" if parts and parts[0][:1] in "45" else "5.0.0"


def build_dsn(
    original: QueuedMail,
    refused: dict[str, str],
    *,
    reporting_mta: str,
    remote_mta: str,
    arrival: float,
) -> bytes:
    """A multipart/report; report-type=delivery-status message, CRLF line ends."""
    boundary = f"dsn-{secrets.token_hex(8)}"
    head = original.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    subject = BytesHeaderParser().parsebytes(original.data).get("Subject", "")
    human = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        f"The receiving server {remote_mta} refused them:",
        "",
    ]
    human += [f"<{rcpt}>: {reply}" for rcpt, reply in refused.items()]
    per_message = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Queue-ID: {original.qid}",
        f"Arrival-Date: {formatdate(arrival, localtime=False)}",
    ]
    per_rcpt: list[str] = []
    for rcpt, reply in refused.items():
        per_rcpt += [
            "",
            f"Final-Recipient: rfc822; {rcpt}",
            "Action: failed",
            f"Status: {_status(reply)}",
            f"Remote-MTA: dns; {remote_mta}",
            f"Diagnostic-Code: smtp; {reply}",
        ]
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: {original.mail_from}",
        f"Subject: Undelivered Mail Returned to Sender (Re: {subject})",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        *human,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *per_message,
        *per_rcpt,
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    tail = ["", f"--{boundary}--", ""]
    return ("\r\n".join(lines) + "\r\n").encode() + head + "\r\n".join(tail).encode()

"""DKIM keys and signing (RFC 6376) with dkimpy; keys made with `cryptography`.

The private key is generated once into the lab's key directory (like the TLS
certificates) and the public half is published in the simulated DNS as
`selector._domainkey.domain` TXT, where the receiving MTA looks it up. That TXT value
is written beside the key when it is made, so only making a key needs `cryptography`
(about 8 MB in the recording worker for the rest of its life); signing is dkimpy's.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engines.dkimpy import dkim
from app.world.dns import Record, SimulatedDNS

SIGNED_HEADERS = [b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"mime-version"]


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    private_pem: bytes
    public_txt: str  # the TXT record's value: "v=DKIM1; k=rsa; p=..."

    @classmethod
    def load(cls, directory: Path, domain: str, selector: str) -> DkimKey:
        """The key for selector._domainkey.domain, generated on first use (RSA 2048)."""
        path = Path(directory) / f"dkim-{selector}.{domain}.key"
        txt = path.with_name(path.name + ".txt")
        if not path.exists() or not txt.exists():
            _make(path, txt)
        return cls(domain, selector, path.read_bytes(), txt.read_text("ascii").strip())

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def txt_value(self) -> str:
        return self.public_txt

    def publish(self, dns: SimulatedDNS) -> None:
        dns.remove(self.record_name, "TXT")
        dns.add(Record(self.record_name, "TXT", self.txt_value()))

    def sign(self, message: bytes, *, as_domain: str | None = None) -> bytes:
        """The DKIM-Signature header (CRLF-terminated) for `message`. `as_domain` lets
        a forger put someone else's d= on a signature made with this key."""
        return dkim.sign(
            message,
            self.selector.encode(),
            (as_domain or self.domain).encode(),
            self.private_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in SIGNED_HEADERS if _has_header(message, h)],
        )


def _make(path: Path, txt: Path) -> None:
    """Generate the key (unless a directory made before the .txt files already holds
    one) and write its public half as the TXT value beside it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key: Any = None
    if not path.exists():
        made = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.parent.mkdir(parents=True, exist_ok=True)
        # dkimpy reads the traditional PKCS#1 "RSA PRIVATE KEY" form.
        pem = made.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        if _create_whole(path, pem, 0o600):
            key = made
    if key is None:
        # Made before, or by another process (the lab process, the recording worker)
        # meanwhile: the TXT always comes from the key that is on disk.
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}\n"
    _write_whole(txt, value.encode("ascii"), 0o644)


def _create_whole(path: Path, data: bytes, mode: int) -> bool:
    """Like `_write_whole`, but only if `path` does not exist yet (False if it did): two
    processes making a key at once keep the first one, never a key from one and the
    TXT from the other."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_bytes(data)
    part.chmod(mode)
    try:
        os.link(part, path)  # fails if the file exists; never a half-written file
    except FileExistsError:
        return False
    finally:
        part.unlink()
    return True


def _write_whole(path: Path, data: bytes, mode: int) -> None:
    """Written beside and renamed into place: the lab process and the recording worker
    may load the same key, and neither may read half a file."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_bytes(data)
    part.chmod(mode)
    os.replace(part, path)


def _has_header(message: bytes, name: bytes) -> bool:
    head = message.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(name + b":") or (b"\n" + name + b":") in head

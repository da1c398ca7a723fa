"""The lab's certificates: a small CA and one server certificate for every lab host.

Generated with `cryptography` on first run into the data dir and reused after, so
a learner can pin the fingerprint once. ECDSA P-256 keeps handshakes cheap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

# `cryptography` (about 12 MB per process) is imported only to make or check the
# certificates, which the web process does once at start; the lab's processes open
# the files with the ssl module alone (`LabTLS.existing`).

# "localhost" matters to fetchmail, mbsync and offlineimap: they check the certificate
# against a host name and will not match 127.0.0.1 to the certificate's IP entry.
LAB_HOSTS = ("mail.a.example", "mx.b.example", "mx2.b.example", "localhost")
log = logging.getLogger("mailflow.tls")
# The host names the certificate in this directory was last found (or made) to name.
HOSTS_STAMP = "server.hosts"


def _name(cn: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MailFlow Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _generate(directory: Path, hosts: tuple[str, ...] = LAB_HOSTS) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("MailFlow Lab CA"))
        .issuer_name(_name("MailFlow Lab CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    sans += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    key_file = directory / "server.key"
    key_file.write_bytes(_pem_key(key))
    key_file.chmod(0o600)
    (directory / HOSTS_STAMP).write_text("\n".join(hosts), "utf-8")


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except OSError:
        return None


def _missing_hosts(cert_file: Path) -> list[str]:
    """LAB_HOSTS the server certificate does not name (all of them if unreadable)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return list(LAB_HOSTS)
    present = set(names.get_values_for_type(x509.DNSName))
    return [h for h in LAB_HOSTS if h not in present]


@dataclass(frozen=True)
class LabTLS:
    """Server and client SSL contexts built from the lab CA in `directory`."""

    directory: Path

    @classmethod
    def load(cls, directory: Path) -> LabTLS:
        directory = Path(directory)
        stamp = directory / HOSTS_STAMP
        if not (directory / "server.key").exists():
            _generate(directory)
        elif _read(stamp) == "\n".join(LAB_HOSTS):
            pass  # checked before: no need to parse the certificate (and load cryptography)
        elif missing := _missing_hosts(directory / "server.pem"):
            # Made by an older version (no DNS:localhost). The CA key was never kept,
            # so CA and certificate are made anew: import the new CA once more.
            log.warning("lab certificate lacks %s: making a new CA and certificate", missing)
            _generate(directory)
        else:
            stamp.write_text("\n".join(LAB_HOSTS), "utf-8")
        return cls(directory)

    @classmethod
    def existing(cls, directory: Path) -> LabTLS:
        """The certificates another process of this app already made and checked."""
        return cls(Path(directory))

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "server.pem"

    @cached_property
    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.directory / "server.key")
        return ctx

    @cached_property
    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    @cached_property
    def fingerprint_sha256(self) -> str:
        # The first certificate of the chain file is the server's own.
        pem = self.cert_file.read_text("ascii")
        end = "-----END CERTIFICATE-----"
        der = ssl.PEM_cert_to_DER_cert(pem[: pem.index(end) + len(end)])
        return hashlib.sha256(der).digest().hex(":").upper()


def describe_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """'TLSv1.3 TLS_AES_256_GCM_SHA384' for the handshake note shown on screen."""
    if ssl_object is None:
        return "TLS"
    cipher = ssl_object.cipher()
    return f"{ssl_object.version()} {cipher[0] if cipher else ''}".strip()

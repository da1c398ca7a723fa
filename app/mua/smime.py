"""S/MIME (RFC 8551) for the scripted MUAs, with `cryptography`.

Each lab user gets an RSA key and a certificate from a small S/MIME CA, made once
into the lab's key directory. Alice's MUA signs (multipart/signed, detached) and
then encrypts to Bob's certificate (application/pkcs7-mime enveloped-data); only
Bob's private key can open it, so every server on the way relays ciphertext.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "MailFlow Lab S/MIME CA"


@dataclass(frozen=True)
class Identity:
    address: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MailFlow Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _save(directory: Path, stem: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / f"{stem}.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)


def _load(directory: Path, stem: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey] | None:
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    if not (cert_file.exists() and key_file.exists()):
        return None
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return x509.load_pem_x509_certificate(cert_file.read_bytes()), key


def _issue(
    subject: str, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None, email: str | None
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    now = dt.datetime.now(dt.UTC)
    # RSA, because CMS enveloped-data with key transport needs an RSA recipient.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
    )
    if email is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        )
    signing_key = issuer[1] if issuer else key
    return builder.sign(signing_key, hashes.SHA256()), key


def ca(directory: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    found = _load(directory, "smime-ca")
    if found is None:
        found = _issue(CA_NAME, None, None)
        _save(directory, "smime-ca", *found)
    return found


def identity(directory: Path, address: str) -> Identity:
    """The user's S/MIME certificate and key, issued by the lab's S/MIME CA once."""
    stem = f"smime-{address.lower()}"
    found = _load(directory, stem)
    if found is None:
        found = _issue(address, ca(directory), address)
        _save(directory, stem, *found)
    return Identity(address, found[0], found[1])


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sign_and_encrypt(entity: bytes, signer: Identity, recipient: x509.Certificate) -> bytes:
    """The MIME entity (headers + body) signed by `signer`, then enveloped for `recipient`.
    Returns a MIME entity: Content-Type: application/pkcs7-mime; smime-type=enveloped-data."""
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(_crlf(entity))
        .add_signer(signer.cert, signer.key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )
    enveloped = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(_crlf(signed))
        .add_recipient(recipient)
        .encrypt(serialization.Encoding.SMIME, [])
    )
    return _crlf(enveloped)


def decrypt(message: bytes, me: Identity) -> bytes:
    """Bob's MUA opens the envelope with his private key; returns the signed entity."""
    return _crlf(pkcs7.pkcs7_decrypt_smime(message, me.cert, me.key, []))


def verify(signed: bytes, directory: Path) -> str:
    """Check the detached signature against the lab S/MIME CA with OpenSSL's `cms`
    (cryptography has no CMS verification). Returns OpenSSL's verdict line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "not verified: the openssl command is not installed"
    ca(directory)
    with tempfile.NamedTemporaryFile(suffix=".eml") as fh:
        fh.write(signed)
        fh.flush()
        proc = subprocess.run(
            [
                openssl,
                "cms",
                "-verify",
                "-in",
                fh.name,
                "-CAfile",
                str(directory / "smime-ca.pem"),
                "-out",
                "/dev/null",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    output = (proc.stderr or proc.stdout).strip()
    return output.splitlines()[-1] if output else f"openssl exited with {proc.returncode}"

"""A DKIM key's public TXT value is kept beside the key: only making the key needs
`cryptography` (about 8 MB for the rest of a recording worker's life); loading,
publishing and signing afterwards are dkimpy's alone."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

USE = """
import sys
from pathlib import Path
from app.engines.dkim_keys import DkimKey
key = DkimKey.load(Path(sys.argv[1]), "a.example", "mf2025")
header = key.sign(b"From: a@a.example\\r\\nSubject: hi\\r\\n\\r\\nbody\\r\\n")
assert header.startswith(b"DKIM-Signature:") and key.txt_value().startswith("v=DKIM1; k=rsa; p=")
print(key.txt_value())
print("cryptography" in sys.modules)
"""


def use(directory: Path) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", USE, str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    txt, imported = out.stdout.strip().rsplit("\n", 1)
    return txt, imported


def test_only_making_the_key_imports_cryptography(tmp_path: Path) -> None:
    made_txt, made_imported = use(tmp_path)
    assert made_imported == "True"  # the first use makes the key
    again_txt, again_imported = use(tmp_path)
    assert again_imported == "False"
    assert again_txt == made_txt
    assert (tmp_path / "dkim-mf2025.a.example.key.txt").read_text().strip() == made_txt


def test_a_key_made_before_the_txt_files_keeps_its_key(tmp_path: Path) -> None:
    use(tmp_path)
    key = tmp_path / "dkim-mf2025.a.example.key"
    pem = key.read_bytes()
    (tmp_path / "dkim-mf2025.a.example.key.txt").unlink()  # as in an older data directory
    txt, _ = use(tmp_path)
    assert key.read_bytes() == pem  # not replaced: signatures already out stay valid
    assert (tmp_path / "dkim-mf2025.a.example.key.txt").read_text().strip() == txt


def test_two_processes_making_the_key_at_once_leave_one_matching_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving: another process writes its key while this one generates, and
    writes its TXT last. The key and the TXT on disk must still be one pair (the first
    key made), or every signature fails DKIM at the receiving MTA."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from app.engines.dkim_keys import DkimKey


    path = tmp_path / "dkim-mf2025.a.example.key"
    txt = path.with_name(path.name + ".txt")
    real_generate = rsa.generate_private_key

    def txt_of(key: Any) -> str:
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    others: list[Any] = []

    def generate_while_the_other_writes(**kwargs: Any) -> Any:
        mine = real_generate(**kwargs)  # the real generator
        other = real_generate(**kwargs)  # the other process's key lands meanwhile
        others.append(other)
        pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        return mine

    monkeypatch.setattr(rsa, "generate_private_key", generate_while_the_other_writes)
    key = DkimKey.load(tmp_path, "a.example", "mf2025")
    txt.write_text(txt_of(others[0]) + "\n")  # the other process's last step
    on_disk = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert txt.read_text().strip() == txt_of(on_disk)  # one pair
    assert key.private_pem == path.read_bytes() and key.public_txt == txt_of(on_disk)
    assert not list(tmp_path.glob("*.part"))


SIGN_AND_VERIFY = """
import sys
from pathlib import Path
from app.engines import sender_auth  # the receiving MTA's side imports dkimpy too
from app.engines.dkim_keys import DkimKey
from app.engines.dkimpy import dkim
key = DkimKey.load(Path(sys.argv[1]), "a.example", "mf2025")
message = b"From: a@a.example\\r\\nSubject: hi\\r\\n\\r\\nbody\\r\\n"
signed = key.sign(message) + message
def published(name, timeout=5):
    return key.txt_value().encode()
print(dkim.verify(signed, dnsfunc=published))
print(dkim.verify(signed.replace(b"body", b"BODY"), dnsfunc=published))
try:
    dkim.verify(signed)  # no dnsfunc: would be a lookup in real DNS
except RuntimeError:
    print("refused")
print(any(m == "dns" or m.startswith("dns.") for m in sys.modules))
"""


def test_dkim_signs_and_verifies_without_dnspython(tmp_path: Path) -> None:
    """dkimpy imports dnspython (about 5.6 MB) only for a default lookup of real DNS;
    the lab passes its simulated DNS to every verify, so it is kept out
    (app/engines/dkimpy.py), and a verify without it is refused, not sent out."""
    use(tmp_path)  # the key made (cryptography) in a process of its own
    out = subprocess.run(
        [sys.executable, "-c", SIGN_AND_VERIFY, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["True", "False", "refused", "False"]

"""A DKIM key's public TXT value is kept beside the key: only making the key needs
`cryptography` (about 8 MB for the rest of a recording worker's life); loading,
publishing and signing afterwards are dkimpy's alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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

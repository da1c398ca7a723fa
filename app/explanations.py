"""Explanations of protocol lines: data under app/content/explanations/, looked up by key.

An event carries the most specific key its engine knows (e.g. `smtp.rcpt.550`). The
catalog answers with the most specific entry it has, falling back along a fixed
chain (`smtp.reply.550`, then `smtp.reply.5xx`; LMTP shares SMTP's entries), so a
new reply code is still explained by its class.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.digits import is_digits
from app.langs import LANGS

EXPLANATION_DIR = Path(__file__).resolve().parent / "content" / "explanations"
_RFC = re.compile(r"RFC\s*(\d+)(?:\s*§\s*([\w.]+))?")


@dataclass(frozen=True, slots=True)
class Explanation:
    key: str
    text: dict[str, str]
    rfc: str  # e.g. "RFC 5321 §4.1.1.1"

    @property
    def rfc_url(self) -> str:
        m = _RFC.search(self.rfc)
        if not m:
            return ""
        url = f"https://www.rfc-editor.org/rfc/rfc{m.group(1)}"
        if m.group(2):
            section = m.group(2)
            kind = "appendix" if section[0].isalpha() else "section"
            url += f"#{kind}-{section}"
        return url


def candidates(key: str) -> Iterator[str]:
    """The lookup chain for a key, most specific first."""
    for family in _families(key):
        yield family
        parts = family.split(".")
        if len(parts) >= 3:
            status = parts[-1]
            yield f"{parts[0]}.reply.{status}"
            if len(status) == 3 and is_digits(status):
                yield f"{parts[0]}.reply.{status[0]}xx"


def _families(key: str) -> Iterator[str]:
    yield key
    if key.startswith("lmtp."):
        # LMTP is SMTP with LHLO and per-recipient DATA replies (RFC 2033).
        yield "smtp." + key[5:]


class Catalog:
    def __init__(self, entries: dict[str, Explanation]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, directory: Path = EXPLANATION_DIR) -> Catalog:
        entries: dict[str, Explanation] = {}
        for path in sorted(directory.glob("*.toml")):
            data = tomllib.loads(path.read_text("utf-8"))
            for key, value in data.items():
                if key in entries:
                    raise ValueError(f"{path.name}: explanation '{key}' is defined twice")
                text = {lang: str(value.get(lang, "")).strip() for lang in LANGS}
                entries[key] = Explanation(key, text, str(value.get("rfc", "")).strip())
        return cls(entries)

    def lookup(self, key: str) -> Explanation | None:
        for candidate in candidates(key):
            found = self.entries.get(candidate)
            if found is not None:
                return found
        return None


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    return Catalog.load()

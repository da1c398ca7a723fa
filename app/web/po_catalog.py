"""Read a gettext `.po` catalog into the standard library's `gettext.GNUTranslations`.

Babel read and compiled the catalogs before; for this one job it brought its message
catalog, locale data, dates, numbers and difflib into the web process (about 1.7 MiB
of RSS for two small files). What a `.po` file says is small and fixed (the GNU gettext
manual, "The Format of PO Files"): entries of `msgctxt` / `msgid` / `msgid_plural` /
`msgstr` / `msgstr[N]`, each a C-escaped string continued on lines that start with a
quote; `#, fuzzy` marks a guess that is not used; `#~` an obsolete entry. The entries
are packed into the `.mo` layout GNUTranslations reads (as Babel's `write_mo` does:
fuzzy and untranslated entries left out, the header kept), so plural forms and the
charset are handled by the standard library. tests/test_po_catalog.py checks the
result against Babel's for every catalog of the app.
"""

from __future__ import annotations

import gettext
import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

_ESCAPE = re.compile(r"\\(.)")
_UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")\s*$")


class PoError(ValueError):
    """A line of a .po file that is none of its forms."""


@dataclass
class _Entry:
    context: str | None = None
    ids: list[str] = field(default_factory=list)  # msgid, then msgid_plural if any
    strings: dict[int, str] = field(default_factory=dict)
    fuzzy: bool = False
    plural: bool = False


def _unquote(quoted: str) -> str:
    return _ESCAPE.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(1)), quoted[1:-1])


def parse(text: str) -> list[_Entry]:
    """The entries of a .po file, in file order (obsolete `#~` entries left out)."""
    entries: list[_Entry] = []
    entry = _Entry()
    fuzzy = False
    target: tuple[str, int] | None = None  # which string a continuation line extends

    def finish() -> None:
        nonlocal entry
        if entry.ids:
            entries.append(entry)
        entry = _Entry()

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in (f.strip() for f in line[2:].split(",")):
                fuzzy = True
            continue
        if line.startswith('"'):
            if target is None:
                raise PoError(f"line {number}: a string continues nothing")
            kind, index = target
            if kind == "id":
                entry.ids[index] += _unquote(line)
            elif kind == "ctxt":
                entry.context = (entry.context or "") + _unquote(line)
            else:
                entry.strings[index] += _unquote(line)
            continue
        match = _KEYWORD.match(line)
        if match is None:
            raise PoError(f"line {number}: {raw!r}")
        keyword, index, quoted = match.group(1), match.group(2), _unquote(match.group(3))
        if keyword in ("msgctxt", "msgid") and (entry.strings or entry.ids):
            finish()  # a new entry begins
        if keyword == "msgctxt":
            entry.context, target = quoted, ("ctxt", 0)
        elif keyword == "msgid":
            entry.ids, entry.fuzzy, fuzzy = [quoted], fuzzy, False
            target = ("id", 0)
        elif keyword == "msgid_plural":
            entry.ids.append(quoted)
            entry.plural, target = True, ("id", 1)
        else:
            n = int(index) if index is not None else 0
            entry.strings[n] = quoted
            target = ("str", n)
    finish()
    return entries


def _mo_bytes(entries: list[_Entry]) -> bytes:
    """The entries in GNU's .mo layout (little-endian, no hash table)."""
    pairs: list[tuple[bytes, bytes]] = []
    for i, e in enumerate(entries):
        header = i == 0 and e.ids == [""]
        strings = [e.strings.get(n, "") for n in range(max(e.strings, default=0) + 1)]
        translated = bool(e.strings) if e.plural else bool(strings[0])
        if not header and (e.fuzzy or not translated):
            continue  # a guess, or not translated: the msgid itself is shown
        if e.plural:
            # An empty plural form falls back to the msgid (form 0) or msgid_plural.
            strings = [s or e.ids[min(n, 1)] for n, s in enumerate(strings)]
        key = "\0".join(e.ids)
        if e.context is not None:
            key = f"{e.context}\x04{key}"
        pairs.append((key.encode("utf-8"), "\0".join(strings).encode("utf-8")))
    pairs.sort()
    ids, strs, offsets = b"", b"", []
    for key, value in pairs:
        offsets.append((len(ids), len(key), len(strs), len(value)))
        ids += key + b"\0"
        strs += value + b"\0"
    key_start = 7 * 4 + 16 * len(pairs)
    value_start = key_start + len(ids)
    table: list[int] = []
    for id_at, id_len, _, _ in offsets:
        table += [id_len, id_at + key_start]
    for _, _, str_at, str_len in offsets:
        table += [str_len, str_at + value_start]
    head = struct.pack("<Iiiiiii", 0x950412DE, 0, len(pairs), 28, 28 + 8 * len(pairs), 0, 0)
    return head + struct.pack(f"<{len(table)}i", *table) + ids + strs


def load_text(text: str) -> gettext.GNUTranslations:
    """A catalog's text, ready for gettext/ngettext/pgettext.

    The header must say `charset=utf-8` (ours do: Babel writes them so); the entries
    are packed as UTF-8."""
    return gettext.GNUTranslations(io.BytesIO(_mo_bytes(parse(text))))


def load(path: Path) -> gettext.GNUTranslations:
    return load_text(path.read_text("utf-8"))

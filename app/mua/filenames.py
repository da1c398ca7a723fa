"""How a mail program shows an attachment's file name, bidi controls included.

The name travels in the MIME header (Content-Disposition filename, RFC 2183), with
RFC 2231 encoding when it is not plain ASCII, so U+202E RIGHT-TO-LEFT OVERRIDE
crosses every server as "%E2%80%AE". A program that lays the decoded name out by
the Unicode bidi rules draws everything after the override right to left:
"invoice_<RLO>fdp.exe" looks like "invoice_exe.pdf", yet it is still an .exe.
"""

from __future__ import annotations

from dataclasses import dataclass

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
PDF = "\u202c"  # POP DIRECTIONAL FORMATTING: ends an override
# Explicit directional controls a mail program should never honour in a file name.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def displayed(name: str) -> str:
    """The name as drawn on screen: each RLO…PDF run (or RLO…end) reversed.

    Enough of the bidi algorithm (UAX #9, explicit overrides) for file names made of
    left-to-right letters, which is the trick this lesson shows."""
    out: list[str] = []
    i = 0
    while i < len(name):
        if name[i] == RLO:
            end = name.find(PDF, i + 1)
            end = len(name) if end < 0 else end
            out.append(name[i + 1 : end][::-1])
            i = end + 1
        elif name[i] in BIDI_CONTROLS:
            i += 1
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def visible(name: str) -> str:
    """The name with every bidi control written out as [U+XXXX], for showing safely."""
    return "".join(f"[U+{ord(c):04X}]" if c in BIDI_CONTROLS else c for c in name)


@dataclass(frozen=True)
class NameReport:
    raw_header: str  # Content-Disposition as it travelled (folded, RFC 2231)
    decoded: str  # the real name, controls included
    shown: str  # what the mail program draws
    real_extension: str

    @property
    def has_controls(self) -> bool:
        return any(c in BIDI_CONTROLS for c in self.decoded)


def report(raw_header: str, decoded: str) -> NameReport:
    ext = decoded.rpartition(".")[2] if "." in decoded else ""
    return NameReport(raw_header, decoded, displayed(decoded), "." + ext if ext else "")


def note_text(r: NameReport, lang: str) -> str:
    """The MUA's note in the learner's language; the header and names are data."""
    positions = [str(i + 1) for i, c in enumerate(r.decoded) if c in BIDI_CONTROLS]
    if lang == "ja":
        lines = [
            "Content-Disposition: " + r.raw_header,
            f"復号した名前: {visible(r.decoded)}",
            f"メールソフトの表示: {r.shown}",
            f"本当の拡張子: {r.real_extension}",
        ]
        if positions:
            lines.insert(2, f"制御文字: {', '.join(positions)}文字目（U+202Eは右から左への強制）")
        return "\n".join(lines)
    lines = [
        "Content-Disposition: " + r.raw_header,
        f"decoded name: {visible(r.decoded)}",
        f"the mail program shows: {r.shown}",
        f"real extension: {r.real_extension}",
    ]
    if positions:
        where = ", ".join(positions)
        lines.insert(2, f"control character at position {where} (U+202E forces right-to-left)")
    return "\n".join(lines)

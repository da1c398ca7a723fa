"""Room codes people can read off a projector, and friendly default nicknames."""

from __future__ import annotations

import secrets
import unicodedata

# No 0/O, 1/I (and no L-less confusion): read aloud or typed on a phone without doubt.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
LENGTH = 6
MAX_NICK = 20  # characters (code points) after normalisation

_ADJ = {
    "ja": ["青い", "赤い", "白い", "黒い", "小さな", "大きな", "速い", "元気な", "静かな", "緑の"],
    "en": ["Blue", "Red", "White", "Black", "Little", "Big", "Swift", "Happy", "Quiet", "Green"],
}
_ANIMAL = {
    "ja": [
        "ペンギン",
        "キツネ",
        "フクロウ",
        "イルカ",
        "パンダ",
        "ウサギ",
        "カメ",
        "リス",
        "ネコ",
        "クジラ",
    ],
    "en": [
        "Penguin",
        "Fox",
        "Owl",
        "Dolphin",
        "Panda",
        "Rabbit",
        "Turtle",
        "Squirrel",
        "Cat",
        "Whale",
    ],
}


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize_code(raw: str) -> str | None:
    """What a student typed ("abc def", "ABC-DEF") as a code, or None if it cannot be one."""
    code = "".join(ch for ch in raw.upper() if ch not in " -\t")
    if len(code) != LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def default_nick(lang: str) -> str:
    words = "ja" if lang == "ja" else "en"
    adj, animal = secrets.choice(_ADJ[words]), secrets.choice(_ANIMAL[words])
    return f"{adj}{animal}" if words == "ja" else f"{adj} {animal}"


def clean_nick(raw: str | None, lang: str) -> str:
    """A nickname to show: control and format characters dropped (no RLO tricks), width
    limited, blank replaced by a friendly default. HTML escaping happens where shown."""
    text = unicodedata.normalize("NFKC", raw or "")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    text = " ".join(text.split())[:MAX_NICK]
    return text or default_nick(lang)

"""UI language: Japanese first, English second, through Babel's gettext catalogs.

Templates mark strings with `_()`. The .po files under app/locales are compiled in
memory at start-up (no build step); the current request's language lives in a
context variable so one Jinja environment serves both languages.
"""

from __future__ import annotations

import contextvars
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from app.langs import LANGS

DEFAULT_LANG = "ja"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locales"
COOKIE = "lang"

current_lang: contextvars.ContextVar[str] = contextvars.ContextVar("lang", default=DEFAULT_LANG)


@cache
def translations(lang: str) -> NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def gettext(message: str) -> str:
    return translations(current_lang.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current_lang.get()).ngettext(singular, plural, n)


def pick_lang(query: str | None, cookie: str | None, accept: str | None = None) -> str:
    """?lang= wins, then the remembered cookie, then Japanese (the product's first language)."""
    for candidate in (query, cookie):
        if candidate in LANGS:
            return candidate  # type: ignore[return-value]
    return DEFAULT_LANG

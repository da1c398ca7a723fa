"""UI language: Japanese first, English second, through gettext catalogs.

Templates mark strings with `_()`. The .po files under app/locales (made and updated
with Babel's `pybabel`) are read at start-up by app/web/po_catalog.py into the
standard library's gettext (no build step, and no Babel in the web process); the
current request's language lives in a context variable so one Jinja environment
serves both languages.
"""

from __future__ import annotations

import contextvars
from functools import cache
from gettext import NullTranslations
from pathlib import Path

from app.langs import LANGS
from app.web import po_catalog

DEFAULT_LANG = "ja"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locales"
COOKIE = "lang"

current_lang: contextvars.ContextVar[str] = contextvars.ContextVar("lang", default=DEFAULT_LANG)


@cache
def translations(lang: str) -> NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    return po_catalog.load(po)


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

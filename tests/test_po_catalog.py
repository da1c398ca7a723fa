"""app/web/po_catalog.py reads the app's .po catalogs as Babel reads and compiles them.

Babel (the tool that makes and updates the catalogs) is the reference: for every
catalog of the app and for a catalog with the forms ours do not use yet (context,
plurals, fuzzy and untranslated entries, obsolete entries, escapes, continued strings),
every translation looked up through our reader equals the one through Babel's
`read_po` + `write_mo` + `Translations`.
"""

from __future__ import annotations

import io

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from app.web import i18n, po_catalog

CATALOGS = sorted(i18n.LOCALE_DIR.glob("*/LC_MESSAGES/messages.po"))

EVERY_FORM = r'''# A header Babel marks fuzzy; it is kept.
#, fuzzy
msgid ""
msgstr ""
"Language: ja\n"
"Plural-Forms: nplurals=1; plural=0;\n"
"Content-Type: text/plain; charset=utf-8\n"

#: templates/x.html:1
msgid "Back"
msgstr "戻る"

#, python-format
msgid "Step %(n)s of %(total)s"
msgstr "%(total)s 中 %(n)s"

msgid ""
"A long text "
"continued"
msgstr ""
"長い文章が"
"続く"

msgid "Say \"hi\"\tand\\go\n"
msgstr "「hi」と言う\t\\\n"

#, fuzzy
msgid "A guess"
msgstr "推測"

msgid "Not yet"
msgstr ""

msgctxt "button"
msgid "Open"
msgstr "開く"

msgid "Open"
msgstr "オープン"

msgid "one file"
msgid_plural "%(n)s files"
msgstr[0] "%(n)s 個のファイル"

msgid "one folder"
msgid_plural "%(n)s folders"
msgstr[0] ""

#~ msgid "Gone"
#~ msgstr "消えた"
'''


def _babel(text: str, locale: str) -> Translations:
    buf = io.BytesIO()
    write_mo(buf, read_po(io.StringIO(text), locale=locale))
    buf.seek(0)
    return Translations(buf)


def _lookups(path_text: str) -> list[tuple[str, ...]]:
    """Every msgid of the catalog (and some that are not in it), as lookups."""
    ids = [m.id for m in read_po(io.StringIO(path_text))]
    out: list[tuple[str, ...]] = [("gettext", "not in the catalog"), ("gettext", "Gone")]
    for msgid in ids:
        if isinstance(msgid, tuple):
            out += [("ngettext", msgid[0], msgid[1], str(n)) for n in (1, 2, 5)]
        elif msgid:
            out += [("gettext", msgid), ("pgettext", "button", msgid)]
    return out


def _call(t: object, lookup: tuple[str, ...]) -> str:
    name, *args = lookup
    if name == "ngettext":
        return getattr(t, name)(args[0], args[1], int(args[2]))
    return getattr(t, name)(*args)


@pytest.mark.parametrize(
    "name, text",
    [(str(p.relative_to(i18n.LOCALE_DIR)), p.read_text("utf-8")) for p in CATALOGS]
    + [("every form", EVERY_FORM)],
)
def test_every_lookup_gives_what_babel_gives(name: str, text: str) -> None:
    ours = po_catalog.load_text(text)
    babel = _babel(text, "ja")
    lookups = _lookups(text)
    assert len(lookups) > 4
    for lookup in lookups:
        assert _call(ours, lookup) == _call(babel, lookup), lookup


def test_the_forms_are_read_as_meant() -> None:
    t = po_catalog.load_text(EVERY_FORM)
    assert t.gettext("Back") == "戻る"
    assert t.gettext("A long text continued") == "長い文章が続く"
    assert t.gettext('Say "hi"\tand\\go\n') == "「hi」と言う\t\\\n"
    assert t.gettext("A guess") == "A guess"  # fuzzy: not used
    assert t.gettext("Not yet") == "Not yet"
    assert t.pgettext("button", "Open") == "開く" and t.gettext("Open") == "オープン"
    assert t.ngettext("one file", "%(n)s files", 3) == "%(n)s 個のファイル"
    assert t.gettext("Gone") == "Gone"  # obsolete


def test_a_line_that_is_no_po_form_is_an_error_naming_it() -> None:
    with pytest.raises(po_catalog.PoError, match="line 2"):
        po_catalog.parse('msgid "a"\nmsgstr: "b"\n')


def test_the_japanese_catalog_is_the_one_the_app_uses() -> None:
    assert i18n.translations("ja").gettext("Back") == "戻る"
    assert i18n.translations("en").gettext("Back") == "Back"

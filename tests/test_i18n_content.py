"""Every UI string and every piece of scenario content exists in Japanese and English."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from app.scenarios.model import LANGS, load_all
from app.web.i18n import LOCALE_DIR

ROOT = Path(__file__).resolve().parent.parent


def template_msgids() -> set[str]:
    method_map = [("templates/**.html", "jinja2"), ("app/**.py", "python")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        ROOT, method_map, options_map=options
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_ui_string_has_a_japanese_translation() -> None:
    with open(LOCALE_DIR / "ja" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh, locale="ja")
    translated = {m.id: m.string for m in catalog if m.id}
    ids = template_msgids()
    assert len(ids) > 40
    missing = sorted(i for i in ids if not translated.get(i))
    assert not missing, f"no Japanese for: {missing}"


def test_scenarios_have_both_languages_and_known_actions() -> None:
    from app.scenarios.actions import ACTIONS

    scenarios = load_all()
    assert {"basic-pop3", "basic-imap"} <= set(scenarios)
    for s in scenarios.values():
        for part in ("title", "intro", "summary"):
            for lang in LANGS:
                assert s.text(part, lang), (s.slug, part, lang)
        for action in s.actions:
            assert action.do in ACTIONS, (s.slug, action.do)


def test_scenario_topics_are_exam_topic_ids() -> None:
    """The topic ids live in the repository (app/content/quiz/topics.toml)."""
    import tomllib

    topics = tomllib.loads((ROOT / "app/content/quiz/topics.toml").read_text("utf-8"))
    ids = {t["id"] for t in topics["topics"]}
    assert {"roles", "sender-auth", "mail-threats", "spam-filtering", "misdelivery"} <= ids
    for s in load_all().values():
        assert set(s.topics) <= ids, s.slug


def test_notes_the_app_writes_exist_in_both_languages() -> None:
    import re
    import string

    from app.notes import templates

    japanese = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u4e00-\u9fff]")
    for key, entry in templates().items():
        fields = {
            lang: {f for _t, f, _s, _c in string.Formatter().parse(entry[lang]) if f}
            for lang in LANGS
        }
        assert fields["ja"] == fields["en"], key  # the same values in both languages
        words = re.sub(r"\{\w+\}", "", entry["en"])
        if re.search(r"[A-Za-z]{3,}", words):
            assert japanese.search(entry["ja"]), f"{key}: English words but no Japanese"

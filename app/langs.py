"""The languages every page, explanation, note, scenario and question comes in:
Japanese first (the exam's language), English second."""

LANGS = ("ja", "en")

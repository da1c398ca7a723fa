"""Whole numbers typed by people and clients: ASCII digits only.

str.isdigit() also admits "²", "¹" and other Unicode digits that int() refuses, which
turned a typo in a URL or a form into a 500. Everything that parses a number from
outside goes through here.
"""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """True for a non-empty run of ASCII 0-9 and nothing else."""
    return text.isascii() and text.isdigit()


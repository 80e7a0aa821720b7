"""Paragraph-level de-duplication of a text, so that a held-out part cannot be scored by copying
what the training part already holds word for word.

A paragraph is the text between runs of blank lines (empty, or spaces, tabs and carriage
returns only). Walking the paragraphs in order, one of at least ``width`` characters is dropped
when at least ``share`` of its ``width``-character strings (one at every offset) occur in the
paragraphs kept before it; shorter ones (headings, one-line remarks) are always kept, since
repeating them is ordinary language rather than copying. The paragraphs kept, and the blank
lines after each, are returned unchanged and in order.
"""

from __future__ import annotations

import re
from typing import NamedTuple

WIDTH = 64  # characters in a string looked up among those of the paragraphs kept before
SHARE = 0.5  # a paragraph goes when at least this share of its strings was seen before

_PARAGRAPH = re.compile(r"(.*?)(\n(?:[ \t\r\f\v]*\n)+|\Z)", re.DOTALL)


class Deduplicated(NamedTuple):
    text: str
    paragraphs_dropped: int


def strings_of(text: str, width: int = WIDTH) -> list[str]:
    """``text``'s ``width``-character strings, one at every offset."""
    return [text[at : at + width] for at in range(len(text) - width + 1)]


def deduplicate(text: str, width: int = WIDTH, share: float = SHARE) -> Deduplicated:
    """``text`` without its paragraphs that mostly repeat earlier ones (the module's rule)."""
    if width < 1 or not 0 < share <= 1:
        raise ValueError(f"width must be positive and share in (0, 1], not {width}, {share}")
    seen: set[str] = set()
    kept: list[str] = []
    dropped = 0
    for match in _PARAGRAPH.finditer(text):
        paragraph, blank_lines = match.groups()
        if not paragraph and not blank_lines:
            continue  # the empty match at the end
        strings = strings_of(paragraph, width)
        if strings and sum(string in seen for string in strings) >= share * len(strings):
            dropped += 1
            continue
        seen.update(strings)
        kept.append(paragraph + blank_lines)
    return Deduplicated("".join(kept), dropped)

"""Paragraph-level de-duplication (``rnnlab.data.dedup``) and the default corpus built with it:
the rule checked against an independent reading of it on generated texts, the boundary cases
written out by hand, and the purpose on the shipped corpus (its test part no longer copies the
rest)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data.corpus import default_corpus
from rnnlab.data.dedup import WIDTH, deduplicate


def _pieces(text: str) -> list[tuple[str, str]]:
    """Each paragraph and the blank lines after it, as the module's docstring defines them."""
    parts = [*re.split(r"(\n(?:[ \t\r]*\n)+)", text), ""]
    return list(zip(parts[0::2], parts[1::2], strict=True))


def _windows(paragraph: str, width: int) -> list[str]:
    return [paragraph[at : at + width] for at in range(len(paragraph) - width + 1)]


# paragraphs over a two-letter alphabet, so that repeats of every length are common; blank lines
# empty or not, and the text's end after a paragraph, a line break or blank lines
_paragraph = st.text(alphabet="ab\n", min_size=0, max_size=14).map(lambda s: s.strip("\n"))
_separator = st.sampled_from(["\n\n", "\n\n\n", "\n \n", "\r\n\r\n"])
_texts = st.tuples(
    st.lists(st.tuples(_paragraph, _separator), max_size=12),
    st.sampled_from(["", "\n", "\n\n"]),
).map(lambda drawn: "".join(p + sep for p, sep in drawn[0]) + drawn[1])


@settings(max_examples=200, deadline=None)
@given(text=_texts, width=st.integers(1, 6), share=st.sampled_from([0.25, 0.5, 1.0]))
def test_the_rule_holds_paragraph_by_paragraph(text, width, share):
    result = deduplicate(text, width, share)
    kept, dropped = [], []
    earlier = ""  # the paragraphs kept so far, each closed by a NUL (never in the texts)
    for paragraph, blank_lines in _pieces(text):
        piece = paragraph + blank_lines
        windows = _windows(paragraph, width)
        repeated = sum(window in earlier for window in windows)  # a substring search
        if windows and repeated / len(windows) >= share:
            dropped.append(piece)
        else:
            earlier += paragraph + "\0"
            kept.append(piece)
    assert result.text == "".join(kept)
    assert result.paragraphs_dropped == len(dropped)
    assert len(text) - len(result.text) == sum(map(len, dropped))
    # nothing left to drop a second time
    assert deduplicate(result.text, width, share).text == result.text


def test_half_repeated_goes_and_less_stays():
    # "abcdefg" has four 4-character strings; "abcde" holds two of them, "abcd" one
    assert deduplicate("abcde\n\nabcdefg", 4, 0.5).text == "abcde\n\n"
    assert deduplicate("abcd\n\nabcdefg", 4, 0.5).text == "abcd\n\nabcdefg"


def test_a_dropped_paragraph_counts_as_not_seen():
    # the second paragraph is dropped (5 of its 8 strings repeat the first); the third's three
    # strings are all in the second, none in the first, so it stays
    text = "abcdefgh\n\nabcdefghIJK\n\nfghIJK"
    assert deduplicate(text, 4, 0.5).text == "abcdefgh\n\nfghIJK"


def test_short_paragraphs_stay_and_blank_lines_travel_with_their_paragraph():
    text = "\n\nNote:\n\n\nNote:\n\nabcdefgh\n\n\nabcdefgh\n\nend"
    result = deduplicate(text, 6, 0.5)  # "Note:" is shorter than 6
    assert result.text == "\n\nNote:\n\n\nNote:\n\nabcdefgh\n\n\nend"
    assert result.paragraphs_dropped == 1


def test_lines_of_spaces_and_carriage_returns_are_blank():
    assert deduplicate("abcdefgh\n  \t\nabcdefgh", 4, 0.5).text == "abcdefgh\n  \t\n"
    assert deduplicate("abcdefgh\r\n\r\nabcdefgh\r\n", 4, 0.5).text == "abcdefgh\r\n\r\n"
    # a line that starts with spaces does not end a paragraph
    assert deduplicate("abcdefgh\n  abcdefgh", 4, 0.5).text == "abcdefgh\n  abcdefgh"


def test_strings_do_not_run_across_paragraphs():
    # "cdef" spans the first two paragraphs' boundary in the text, but in no paragraph
    assert deduplicate("abcd\n\nefgh\n\ncdef", 4, 0.5).text == "abcd\n\nefgh\n\ncdef"


@pytest.mark.parametrize(("width", "share"), [(0, 0.5), (4, 0.0), (4, 1.5)])
def test_settings_out_of_range_are_refused(width, share):
    with pytest.raises(ValueError, match="width must be positive and share in"):
        deduplicate("abc", width, share)


def test_the_default_test_part_hardly_repeats_the_rest():
    # what the de-duplication is for: before it a third of the last 5 %'s 64-character strings
    # occurred verbatim in the text before it; the bound leaves room for other Python versions
    text, _ = default_corpus()
    test_at = len(text) - round(0.05 * len(text))
    earlier = set(_windows(text[:test_at], WIDTH))
    strings = _windows(text[test_at:], WIDTH)
    assert sum(string in earlier for string in strings) < 0.06 * len(strings)

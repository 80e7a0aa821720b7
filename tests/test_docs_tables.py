"""``scripts/docs_tables.py``: the lines between a page's ``<!-- BEGIN name -->`` and
``<!-- END name -->`` markers are replaced, nothing else; a missing or doubled marker fails
with one line naming the page and the marker."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def docs_tables() -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module("docs_tables")


DOCS = docs_tables()

PAGE = """# A page

Some prose.

<!-- BEGIN bench:demo -->
| a | b |
|---|---|
| 1 | 2 |
<!-- END bench:demo -->

More prose, then another generated block.

<!-- BEGIN bench:demo:gpu -->
| a | b |
|---|---|
| 3 | 4 |
<!-- END bench:demo:gpu -->
"""

NEW = "| a | b |\n|---|---|\n| 5 | 6 |\n| 7 | 8 |"


def test_replaces_exactly_the_named_block():
    updated = DOCS.replace_block(PAGE, "bench:demo", NEW, "page.md")
    before, _, after = PAGE.partition("| a | b |\n|---|---|\n| 1 | 2 |")
    assert updated == before + NEW + after
    assert DOCS.read_block(updated, "bench:demo", "page.md") == NEW
    # the other block, whose name starts the same, is untouched
    assert DOCS.read_block(updated, "bench:demo:gpu", "page.md") == (
        "| a | b |\n|---|---|\n| 3 | 4 |"
    )


def test_replacing_is_idempotent_and_the_block_itself_changes_nothing():
    once = DOCS.replace_block(PAGE, "bench:demo", NEW, "page.md")
    assert DOCS.replace_block(once, "bench:demo", NEW, "page.md") == once
    # surrounding newlines of the content do not add blank lines inside the markers
    assert DOCS.replace_block(once, "bench:demo", f"\n{NEW}\n\n", "page.md") == once
    current = DOCS.read_block(PAGE, "bench:demo", "page.md")
    assert DOCS.replace_block(PAGE, "bench:demo", current, "page.md") == PAGE


def test_a_missing_marker_names_the_page_and_the_marker():
    without_end = PAGE.replace("<!-- END bench:demo -->\n", "")
    with pytest.raises(SystemExit) as failed:
        DOCS.replace_block(without_end, "bench:demo", NEW, "docs/page.md")
    assert str(failed.value) == "error: docs/page.md has no line <!-- END bench:demo -->"
    with pytest.raises(SystemExit) as failed:
        DOCS.read_block(PAGE, "bench:other", "docs/page.md")
    assert str(failed.value) == "error: docs/page.md has no line <!-- BEGIN bench:other -->"


def test_a_doubled_marker_names_the_page_and_the_marker():
    doubled = PAGE + "\n<!-- BEGIN bench:demo -->\n"
    with pytest.raises(SystemExit) as failed:
        DOCS.replace_block(doubled, "bench:demo", NEW, "docs/page.md")
    message = str(failed.value)
    assert message == "error: docs/page.md has 2 lines <!-- BEGIN bench:demo -->, not 1"
    assert "\n" not in message


def test_markers_in_the_wrong_order_fail():
    swapped = PAGE.replace("<!-- BEGIN bench:demo -->", "<!-- TMP -->")
    swapped = swapped.replace("<!-- END bench:demo -->", "<!-- BEGIN bench:demo -->")
    swapped = swapped.replace("<!-- TMP -->", "<!-- END bench:demo -->")
    with pytest.raises(SystemExit, match=r"comes before its BEGIN"):
        DOCS.replace_block(swapped, "bench:demo", NEW, "page.md")


def test_write_block_rewrites_the_file_in_place(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    DOCS.write_block(page, "bench:demo:gpu", NEW)
    assert page.read_text(encoding="utf-8") == DOCS.replace_block(
        PAGE, "bench:demo:gpu", NEW, "page.md"
    )
    with pytest.raises(SystemExit) as failed:
        DOCS.write_block(page, "nothing", NEW)
    assert str(failed.value) == f"error: {page.resolve()} has no line <!-- BEGIN nothing -->"

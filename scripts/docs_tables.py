"""Generated blocks of the docs: the text between ``<!-- BEGIN <name> -->`` and
``<!-- END <name> -->``, each marker alone on its line, is what a script writes there (a results
or benchmark table); everything outside the markers is written by hand.

HTML comments render as nothing in MkDocs and on GitHub, so the markers stay invisible."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _marker(word: str, name: str) -> str:
    return f"<!-- {word} {name} -->"


def _block_lines(lines: list[str], name: str, page: str | Path) -> tuple[int, int]:
    """The line numbers of the block's BEGIN and END markers; one line naming the page and the
    marker if either is missing or doubled, or if they come in the wrong order."""
    found = []
    for marker in (_marker("BEGIN", name), _marker("END", name)):
        at = [i for i, line in enumerate(lines) if line.strip() == marker]
        if not at:
            raise SystemExit(f"error: {page} has no line {marker}")
        if len(at) > 1:
            raise SystemExit(f"error: {page} has {len(at)} lines {marker}, not 1")
        found.append(at[0])
    begin, end = found
    if end < begin:
        raise SystemExit(f"error: {page}: {_marker('END', name)} comes before its BEGIN")
    return begin, end


def read_block(text: str, name: str, page: str | Path) -> str:
    """The text between the ``name`` markers of ``text`` (the page ``page``)."""
    lines = text.split("\n")
    begin, end = _block_lines(lines, name, page)
    return "\n".join(lines[begin + 1 : end])


def replace_block(text: str, name: str, content: str, page: str | Path) -> str:
    """``text`` (the page ``page``) with the lines between its ``name`` markers replaced by
    ``content``; the markers and everything outside them as they were."""
    lines = text.split("\n")
    begin, end = _block_lines(lines, name, page)
    new = content.strip("\n").split("\n") if content.strip("\n") else []
    return "\n".join([*lines[: begin + 1], *new, *lines[end:]])


def shown(path: Path) -> str:
    """``path`` as a page name in messages: relative to the checkout when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_block(path: Path, name: str, content: str) -> None:
    """Replace the ``name`` block of the page at ``path`` with ``content``, in place."""
    text = path.read_text(encoding="utf-8")
    path.write_text(replace_block(text, name, content, shown(path)), encoding="utf-8")

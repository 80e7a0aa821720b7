"""The Layout block of docs/extending.md names every module of the package and every script:
a module added, moved or renamed without its line there fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def layout_block() -> str:
    page = (ROOT / "docs" / "extending.md").read_text()
    match = re.search(r"## Layout\n\n```\n(.*?)\n```", page, re.S)
    assert match, "docs/extending.md has no Layout code block"
    return match.group(1)


def layout_entries() -> dict[str, set[str]]:
    """The file names the Layout block lists under each folder line (``folder/  a.py, b.py``;
    a folder's entries continue on the indented lines below it)."""
    entries: dict[str, set[str]] = {}
    folder = ""
    for line in layout_block().split("\n"):
        if line and not line[0].isspace():
            head = line.split()[0]
            folder = head if head.endswith("/") else head.rsplit("/", 1)[0] + "/"
            entries.setdefault(folder, set()).add(head.rsplit("/", 1)[-1])
        # bare names only: a path such as scripts/x.py mentioned in passing belongs elsewhere
        names = re.findall(r"(?<![\w/.])[\w.]+\.(?:py|csv|sh)\b", line)
        entries.setdefault(folder, set()).update(names)
    return entries


def modules(folder: str) -> list[str]:
    return sorted(p.name for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize(
    "folder",
    [
        "src/rnnlab/",
        "src/rnnlab/checkpoint/",
        "src/rnnlab/data/",
        "src/rnnlab/models/",
        "src/rnnlab/callbacks/",
        "src/rnnlab/utils/",
        "src/rnnlab/run/",
        "src/rnnlab/search/",
        "scripts/",
        "scripts/bench/",
    ],
)
def test_layout_names_every_module(folder):
    listed = layout_entries().get(folder, set())
    missing = [name for name in modules(folder) if name not in listed]
    assert modules(folder), f"{folder} has no modules: the test looks in the wrong place"
    assert not missing, f"docs/extending.md's Layout does not name {folder}{missing}"


def test_layout_names_no_module_that_is_gone():
    gone = []
    for folder, names in layout_entries().items():
        for name in names:
            if name.endswith(".py") and not (ROOT / folder / name).is_file():
                gone.append(f"{folder}{name}")
    assert not gone, f"docs/extending.md's Layout names modules that do not exist: {gone}"


def test_no_module_of_the_package_is_over_350_lines():
    """Small single-purpose modules: a module growing past 350 lines is a sign to split it."""
    long = {
        str(path.relative_to(ROOT)): length
        for path in sorted((ROOT / "src" / "rnnlab").rglob("*.py"))
        if (length := len(path.read_text(encoding="utf-8").splitlines())) > 350
    }
    assert not long, f"split these modules: {long}"

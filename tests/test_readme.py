"""The README is a front door: short, each task's own-data command early, a link to every page of
the manual, and headline numbers that are the Results page's, not typed anew."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LINES = README.split("\n")

# One own-data command per task: what a newcomer with their own files must find quickly.
OWN_DATA_COMMANDS = {
    "classification": re.compile(r"rnnlab\.train data\.train_file=\S+\.ts data\.test_file=\S+\.ts"),
    "sequence regression": re.compile(r"experiment=covid3month data\.train_file="),
    "forecasting": re.compile(r"rnnlab\.train experiment=forecast_csv data\.file=\S+\.csv"),
    "language model": re.compile(r"rnnlab\.train experiment=charlm data\.file=\S+"),
}


def nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_readme_is_at_most_200_lines():
    assert len(LINES) <= 200, f"README.md has {len(LINES)} lines; move reference material to docs/"


@pytest.mark.parametrize("task", sorted(OWN_DATA_COMMANDS))
def test_each_tasks_own_data_command_is_in_the_first_100_lines(task):
    first = "\n".join(LINES[:100])
    assert OWN_DATA_COMMANDS[task].search(first), f"no own-data command for {task} in lines 1-100"


def test_readme_links_every_page_of_the_manual():
    # mkdocs.yml's custom tags are not needed for the nav; load it as plain YAML
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    assert len(pages) >= 15
    linked = set(re.findall(r"\]\(docs/([^)#\s]+)", README))
    missing = [page for page in pages if page != "index.md" and page not in linked]
    assert not missing, f"README.md links no manual page {missing}"
    assert all((ROOT / "docs" / page).is_file() for page in linked), "a README link is broken"


def headlines() -> dict[str, str]:
    start = README.index("Each task is scored beside simple")
    index = (ROOT / "docs" / "index.md").read_text()
    return {
        "README.md": README[start : README.index("## Your own data")],
        "docs/index.md": "\n".join(line for line in index.split("\n") if "](results.md#" in line),
    }


@pytest.mark.parametrize("page", sorted(headlines()))
def test_headline_numbers_are_the_results_pages(page):
    """Every number in a headline (the README's results lines, the home page's task table)
    appears in docs/results.md, which scripts/results.py writes: none is typed anew."""
    results = (ROOT / "docs" / "results.md").read_text()
    numbers = re.findall(r"\d+\.\d+", headlines()[page])
    assert len(numbers) >= 8
    missing = [number for number in numbers if number not in results]
    assert not missing, f"{page}: headline numbers not in docs/results.md: {missing}"

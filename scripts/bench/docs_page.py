"""Where a benchmark's tables go in the docs, for the scripts' ``--write-docs``.

Each table (or group of tables) a script prints sits in its page between
``<!-- BEGIN bench:<script>[:<variant>] -->`` and ``<!-- END ... -->``. The variant is what tells
invocations of one script apart: its device, for the scripts that have a device option, then its
Hydra overrides as typed, joined by ``:`` (``bench:throughput:gpu:model.encoder.hidden_size=256``);
options that only change how long or how precisely it measures (``--repetitions``,
``--threads``) are not part of it. Each script's ``docs_variant`` says which arguments it takes.

Standard library only, unlike ``harness.py``: ``encoder_paths.py`` runs where only torch is
installed, and writes its table from there too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # scripts/, for docs_tables
from docs_tables import read_block, shown, write_block

DOCS = Path(__file__).resolve().parents[2] / "docs"
# the diagnostics' cost is shown beside what they measure; every other benchmark in its page
PAGES = {"diagnostics": "rnn-dynamics.md", "prune_search": "sweeps.md"}


def page(script: str) -> Path:
    """The docs page that shows ``scripts/bench/<script>.py``'s tables."""
    return DOCS / PAGES.get(script, "benchmarks.md")


def marker(script: str, variant: Sequence[str]) -> str:
    """The name of the markers around the tables of ``script`` run as ``variant``."""
    return ":".join(["bench", script, *variant])


def add_write_docs_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="also write the tables into the docs page, between the markers "
        "bench:<script>[:<variant>] named from the arguments (see the script's docstring)",
    )


@dataclass(frozen=True)
class DocsBlock:
    """The block between one pair of markers of a docs page."""

    page: Path
    name: str

    def write(self, tables: str) -> None:
        write_block(self.page, self.name, tables)
        print(f"wrote {self.name} into {shown(self.page)}", file=sys.stderr)


def docs_block(script: str, variant: Sequence[str], small: bool = False) -> DocsBlock:
    """Where this run's tables go, checked now (its markers are in the page, once each) rather
    than after the measuring; ``--small`` runs are smoke tests, never written."""
    if small:
        raise SystemExit("error: --small numbers are a smoke test; --write-docs takes full runs")
    block = DocsBlock(page(script), marker(script, variant))
    read_block(block.page.read_text(encoding="utf-8"), block.name, shown(block.page))
    return block

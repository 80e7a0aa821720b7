"""Print what a user sees for each hostile-input case of ``tests/test_hostile.py``, as the
Markdown table in docs/security.md:

    .venv/bin/python scripts/hostile_table.py                # print the table
    .venv/bin/python scripts/hostile_table.py --write-docs   # and write it into docs/security.md

It runs those (slow) tests, which write one row per case to the file named by
``RNNLAB_HOSTILE_TABLE``, and prints the rows in the suite's order. ``--write-docs`` replaces the
lines between ``<!-- BEGIN hostile -->`` and ``<!-- END hostile -->`` in docs/security.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from docs_tables import read_block, write_block

ROOT = Path(__file__).resolve().parents[1]
SECURITY_PAGE = ROOT / "docs" / "security.md"
MARKER = "hostile"
HEADER = "| bad input | command | exit | what the user sees (stderr, one line) |\n|---|---|---|---|"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"also write the table into docs/security.md, between its {MARKER} markers",
    )
    args = parser.parse_args(argv)
    if args.write_docs:  # a missing or doubled marker fails now, not after the slow suite
        read_block(SECURITY_PAGE.read_text(encoding="utf-8"), MARKER, "docs/security.md")
    with tempfile.TemporaryDirectory(prefix="rnnlab-hostile-") as tmp:
        rows = Path(tmp) / "rows.md"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "slow", "tests/test_hostile.py"],
            cwd=ROOT,
            env={**os.environ, "RNNLAB_HOSTILE_TABLE": str(rows)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            print(result.stdout[-3000:], file=sys.stderr)
            return result.returncode
        table = f"{HEADER}\n{rows.read_text(encoding='utf-8')}".rstrip("\n")
    print(table)
    if args.write_docs:
        write_block(SECURITY_PAGE, MARKER, table)
        print(f"wrote {SECURITY_PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

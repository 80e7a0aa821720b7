"""Print what a user sees for each hostile-input case of ``tests/test_hostile.py``, as the
Markdown table in the README:

    .venv/bin/python scripts/hostile_table.py

It runs those (slow) tests, which write one row per case to the file named by
``RNNLAB_HOSTILE_TABLE``, and prints the rows in the suite's order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
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
        print("| bad input | command | exit | what the user sees (stderr, one line) |")
        print("|---|---|---|---|")
        print(rows.read_text(encoding="utf-8"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

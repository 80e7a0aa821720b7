"""Run the hostile-input cases of ``tests/test_hostile.py`` and print what a user sees for each,
as the Markdown table in the README:

    python scripts/hostile_table.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_hostile import CASES, make_checkpoints, run_case


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rnnlab-hostile-") as tmp:
        root = Path(tmp)
        checkpoints = make_checkpoints(root / "checkpoints")
        print("| bad input | command | exit | what the user sees (stderr, one line) |")
        print("|---|---|---|---|")
        for number, case in enumerate(CASES):
            directory = root / f"case{number}"
            directory.mkdir()
            result = run_case(directory, checkpoints, case)
            seen = result.stderr.strip().replace(str(directory) + "/", "").replace("|", "\\|")
            print(f"| {case[0]} | {case[1]} | {result.returncode} | `{seen}` |", flush=True)


if __name__ == "__main__":
    main()

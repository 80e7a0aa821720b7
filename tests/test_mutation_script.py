"""scripts/mutation.py's report and score table, from made-up verdicts (mutmut itself is not run
here: a mutation run takes minutes, see docs/testing.md)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

DIFF = """--- src/rnnlab/data/normalize.py
+++ src/rnnlab/data/normalize.py
@@ -1,2 +1,2 @@
 def fit(self, sequences):
-    steps = torch.cat(sequences, dim=0).double()
+    steps = torch.cat(sequences, ).double()
"""


@pytest.fixture(scope="module")
def mutation() -> ModuleType:
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("mutation")


def _outcome(mutation: ModuleType, finished: bool = True):
    fit = "rnnlab.data.normalize.xǁNormalizerǁfit"
    mutants = [
        *(mutation.Mutant(f"{fit}__mutmut_{i}", "killed") for i in range(1, 8)),
        mutation.Mutant(f"{fit}__mutmut_8", "timeout"),
        mutation.Mutant(f"{fit}__mutmut_9", "survived", DIFF),
        mutation.Mutant(
            f"{fit}__mutmut_10", "no tests", DIFF.replace(").double()\n", ").float()\n")
        ),
        mutation.Mutant(f"{fit}__mutmut_11", "not checked"),
    ]
    equivalent = mutation.Equivalent(
        fit, "steps = torch.cat(sequences, ).double()", "dim=0 is torch.cat's default"
    )
    return mutation.Outcome(
        "src/rnnlab/data/normalize.py",
        ("tests/test_normalize.py",),
        mutants,
        minutes=3.25,
        budget_min=20,
        finished=finished,
        equivalents=[equivalent],
    )


def test_scores_count_timeouts_as_killed_and_leave_unreached_mutants_out(mutation):
    outcome = _outcome(mutation)
    assert outcome.killed() == 8 and len(outcome.live()) == 2 and outcome.decided() == 10
    assert outcome.score() == pytest.approx(0.8)
    assert outcome.score_without_equivalents() == pytest.approx(8 / 9)


def test_report_lists_each_live_mutant_with_its_diff_and_triage(mutation):
    report = mutation.render_report(_outcome(mutation, finished=False))
    assert report.startswith("# Mutation testing: `src/rnnlab/data/normalize.py`\n")
    assert "ran 3.2 of 20 minutes; stopped by the budget (1 not reached)." in report
    assert "| killed | 7 |" in report and "| **all** | 11 |" in report
    assert "**80.0 %**; without the equivalent mutants: **88.9 %**" in report
    assert "## Surviving mutants (2: 1 equivalent, 1 to kill or explain)" in report
    nine, ten = report.index("__mutmut_9`"), report.index("__mutmut_10`")
    assert "equivalent: dim=0 is torch.cat's default" in report[nine:ten]
    assert "**no tests**, not triaged" in report[ten:]
    assert "+    steps = torch.cat(sequences, ).double()" in report[nine:ten]


def test_score_table_replaces_the_modules_row_and_keeps_the_others(mutation):
    other = "| `src/rnnlab/data/windows.py` | 5 | 5 | 0 (0) | 0 | 100.0 % | 100.0 % | 2025-01-01 |"
    stale = "| `src/rnnlab/data/normalize.py` | 1 | 0 | 1 (0) | 0 | 0.0 % | 0.0 % | old |"
    table = mutation.updated_scores(
        "\n".join([*mutation.SCORES_HEADER, stale, other]), _outcome(mutation), "day"
    )
    lines = table.splitlines()
    assert lines[:2] == list(mutation.SCORES_HEADER) and len(lines) == 4
    assert lines[2] == (
        "| `src/rnnlab/data/normalize.py` | 11 | 8 | 2 (1) | 1 | 80.0 % | 88.9 % | day |"
    )
    assert lines[3] == other


def test_equivalents_file_is_read_and_matched_by_function_and_mutated_line(mutation, tmp_path):
    path = tmp_path / "equivalents.toml"
    path.write_text(
        '[[equivalent]]\nfunction = "rnnlab.data.normalize.xǁNormalizerǁfit"\n'
        'mutated = "  steps = torch.cat(sequences, ).double()  "\nreason = "the default"\n',
        encoding="utf-8",
    )
    (entry,) = mutation.load_equivalents(path)
    outcome = _outcome(mutation)
    survived, no_tests = outcome.live()
    assert entry.matches(survived) and not entry.matches(no_tests)
    assert mutation.load_equivalents(tmp_path / "missing.toml") == []


def test_every_recorded_equivalent_names_a_preset_module_and_a_reason(mutation):
    modules = {p[len("src/") : -len(".py")].replace("/", ".") for p in mutation.PRESETS}
    for entry in mutation.load_equivalents(mutation.EQUIVALENTS):
        assert entry.function.rsplit(".", 1)[0] in modules, entry
        assert entry.mutated and len(entry.reason) > 10, entry


def test_modules_are_named_by_path_dotted_name_or_preset_stem(mutation):
    assert mutation.module_path("rnnlab.data.windows") == "src/rnnlab/data/windows.py"
    assert mutation.module_path("windows") == "src/rnnlab/data/windows.py"
    assert mutation.module_path(str(ROOT / "src/rnnlab/ensemble.py")) == "src/rnnlab/ensemble.py"
    with pytest.raises(SystemExit, match="names no one preset module"):
        mutation.module_path("nothing")
    for module, tests in mutation.PRESETS.items():
        assert (ROOT / module).is_file(), module
        assert all((ROOT / t).is_file() for t in tests), module

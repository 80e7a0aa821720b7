"""Mutated checkpoints of every task through eval, predict, generate and resume
(``scripts/fuzz_checkpoints.py``): each ends in exit 0 with a sound result or exit 2 in one
line, never a traceback, a kill by the memory or time limit, or a file changed outside its own
folder. A handful here; a few hundred in the slow suite; any number through the script."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def fuzzer() -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module("fuzz_checkpoints")


def _failures(module: ModuleType, results: list) -> str:
    return "\n".join(module.describe(r) for r in module.failures(results))


def test_mutants_are_planned_the_same_in_any_count_and_cover_every_kind():
    module = fuzzer()
    assert [module.plan(7, i) for i in range(3, 6)] == [module.plan(7, i) for i in range(3, 6)]
    planned = [module.plan(0, i) for i in range(400)]
    assert {m.kind for m in planned} == set(module.KINDS)
    assert {(m.task, m.command) for m in planned} >= {
        (task, command) for task in module.TASKS for command in ("eval", "predict", "resume")
    }
    assert {m.command for m in planned if m.task == "language model"} >= {"generate"}


def test_a_handful_of_mutants_end_in_a_result_or_one_line(tmp_path):
    module = fuzzer()
    # of the language model alone, the quickest task to train and run (the slow test: all)
    tasks = ("language model",)
    results = module.fuzz(tmp_path, count=5, seed=0, tasks=tasks)
    assert len(results) == 5
    assert not module.failures(results), _failures(module, results)
    # the same mutant, alone, is the same mutant: what it changed and how it ended
    again = module.fuzz(tmp_path, count=1, seed=0, start=2, tasks=tasks)
    assert (again[0].what, again[0].outcome) == (results[2].what, results[2].outcome)


@pytest.mark.slow
def test_a_few_hundred_mutants_end_in_a_result_or_one_line(tmp_path):
    module = fuzzer()
    results = module.fuzz(tmp_path, count=240, seed=1, jobs=2)
    assert not module.failures(results), module.table(results) + "\n" + _failures(module, results)

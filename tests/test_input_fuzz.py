"""The input fuzzer (scripts/fuzz_inputs.py): mutated CSV, .ts and text files, each read as
training data and as a trained module's input in a memory-limited child, end in a result or one
line; never a traceback, a memory kill or a hang. A handful by default, hundreds in the slow
suite; the same mutants on every machine."""

from __future__ import annotations

import random

import pytest

from scripts import fuzz_inputs


def _assert_no_failures(results: list[dict[str, str]]) -> None:
    failed = fuzz_inputs.failures(results)
    assert not failed, "\n\n".join(
        f"mutant {r['index']} ({r['kind']}): {r['outcome']}\n{r['detail']}" for r in failed
    )


def test_mutants_are_the_same_for_the_same_seed_and_index(tmp_path):
    bases = fuzz_inputs.base_files(tmp_path)
    for kind in fuzz_inputs.KINDS:
        raw = bases[kind].read_bytes()
        mutants = [fuzz_inputs.mutate(raw, kind, random.Random(f"3-{i}")) for i in range(20)]
        again = [fuzz_inputs.mutate(raw, kind, random.Random(f"3-{i}")) for i in range(20)]
        assert mutants == again
        assert sum(m != raw for m in mutants) >= 15  # a change may, rarely, undo another


def test_the_base_files_read_cleanly(tmp_path):
    bases = fuzz_inputs.base_files(tmp_path)
    for kind in fuzz_inputs.KINDS:
        for read in fuzz_inputs.readings(kind, bases[kind], bases[kind]):
            read()


def test_a_handful_of_mutants_end_in_a_result_or_one_line():
    results = fuzz_inputs.fuzz(count=6, seed=0)
    assert {r["kind"] for r in results} == set(fuzz_inputs.KINDS)
    _assert_no_failures(results)


@pytest.mark.slow
def test_hundreds_of_mutants_and_some_training_runs_end_in_a_result_or_one_line():
    results = fuzz_inputs.fuzz(count=300, seed=1, train_every=100)
    assert len(results) == 300
    _assert_no_failures(results)

"""k-fold cross-validation on the training split: folds partition it, are stratified and seeded,
and the test split never enters one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data.classification import ClassificationDataModule, stratified_split
from rnnlab.data.folds import fold_split
from rnnlab.data.regression import RegressionDataModule
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import TS_HEADER, write_ts


@st.composite
def labelled(draw) -> tuple[np.ndarray, int, int, bool]:
    """Labels of 2-4 classes with at least ``folds`` samples each, in a drawn order."""
    folds = draw(st.integers(2, 6))
    counts = draw(st.lists(st.integers(folds, 15), min_size=2, max_size=4))
    labels = np.repeat([f"c{i}" for i in range(len(counts))], counts)
    order = draw(st.permutations(range(len(labels))))
    seed = draw(st.integers(0, 2**40))  # beyond numpy's 2**32: wrapped, not refused
    return labels[list(order)], folds, seed, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(labelled())
def test_folds_partition_the_training_split_stratified_and_seeded(case):
    labels, folds, seed, stratify = case
    everything = np.arange(len(labels))
    parts = [fold_split(labels, folds, fold, seed, stratify) for fold in range(folds)]
    vals = [val for _, val in parts]
    # each fold: train and val are disjoint and together the whole training split
    for train, val in parts:
        assert np.array_equal(np.sort(np.concatenate([train, val])), everything)
        assert not set(train) & set(val)
    # the validation parts: disjoint, together every sample exactly once
    assert np.array_equal(np.sort(np.concatenate(vals)), everything)
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1
    if stratify:  # each class spread over the folds within one sample
        for cls in np.unique(labels):
            per_fold = [int((labels[v] == cls).sum()) for v in vals]
            assert max(per_fold) - min(per_fold) <= 1, (cls, per_fold)
    # the same seed gives the same folds
    again = [fold_split(labels, folds, fold, seed, stratify) for fold in range(folds)]
    for (train, val), (train2, val2) in zip(parts, again, strict=True):
        assert np.array_equal(train, train2) and np.array_equal(val, val2)


def test_another_seed_draws_other_folds():
    labels = np.repeat(["a", "b"], 20)
    assert not np.array_equal(
        fold_split(labels, 4, 0, 1, True)[1], fold_split(labels, 4, 0, 2, True)[1]
    )


def _distinct_rows(n: int, offset: float) -> list[str]:
    """Rows whose first value names the sample, so a sequence shows which split it came from."""
    return [f"{offset + i},{i % 3},1:{'ab'[i % 2]}" for i in range(n)]


@pytest.mark.parametrize("module", [ClassificationDataModule, RegressionDataModule])
def test_the_test_split_never_enters_a_fold(tmp_path: Path, module):
    if module is RegressionDataModule:
        header = TS_HEADER.replace("@classLabel true a b", "@targetLabel true")
        rows = [f"{1000 + i},{i % 3},1:{i * 0.5}" for i in range(20)]
        tests = [f"{5000 + i},{i % 3},1:{i * 0.25}" for i in range(7)]
        (tmp_path / "train.ts").write_text(header + "\n".join(rows) + "\n")
        (tmp_path / "test.ts").write_text(header + "\n".join(tests) + "\n")
        files = {"train_file": str(tmp_path / "train.ts"), "test_file": str(tmp_path / "test.ts")}
    else:
        files = {
            "train_file": write_ts(tmp_path / "train.ts", _distinct_rows(20, 1000)),
            "test_file": write_ts(tmp_path / "test.ts", _distinct_rows(7, 5000)),
        }
    validated: list[float] = []
    for fold in range(4):
        dm = module(**files, folds=4, fold=fold, seed=5, normalize="none")
        dm.setup("fit")
        ids = {split: [float(s[0, 0]) for s in dm.splits[split][0]] for split in dm.splits}
        assert all(i >= 5000 for i in ids["test"]) and len(ids["test"]) == 7
        assert all(1000 <= i < 5000 for i in ids["train"] + ids["val"])
        assert sorted(ids["train"] + ids["val"]) == [1000.0 + i for i in range(20)]
        validated += ids["val"]
    assert sorted(validated) == [1000.0 + i for i in range(20)]


def test_without_folds_the_split_is_the_val_fraction_share_as_before():
    labels = np.repeat(["a", "b", "c"], [9, 12, 7])
    for module, holdout in (
        (ClassificationDataModule(seed=3), stratified_split(labels, 0.2, 3)),
        (RegressionDataModule(seed=3), RegressionDataModule(seed=3).holdout_indices(labels)),
    ):
        for got, expected in zip(module.split_indices(labels), holdout, strict=True):
            assert np.array_equal(got, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, r"data\.folds must be an integer >= 2 \(or null: no folds\), got 1"),
        (
            {"folds": 5, "fold": 5},
            r"data\.fold=5 is not a fold of data\.folds=5; choose data\.fold from 0 to 4",
        ),
        ({"folds": 5, "fold": -1}, r"data\.fold=-1 is not a fold"),
        ({"fold": 2}, r"data\.fold=2 selects a cross-validation fold, but data\.folds is null"),
    ],
)
def test_bad_fold_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ClassificationDataModule(**kwargs)


def test_a_class_with_fewer_samples_than_folds_is_named(tmp_path: Path):
    rows = [f"{i},1:a" for i in range(8)] + ["1,2:b", "2,1:b"]
    dm = ClassificationDataModule(
        train_file=write_ts(tmp_path / "train.ts", rows),
        test_file=write_ts(tmp_path / "test.ts", ["1,2:a", "2,1:b"]),
        folds=3,
    )
    with pytest.raises(
        DataError, match=r"class 'b' has 2 training samples, fewer than data\.folds=3.*at most 2$"
    ):
        dm.setup("fit")

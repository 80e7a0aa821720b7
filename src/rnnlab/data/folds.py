"""k-fold cross-validation on the official training split: which training samples validate.

Classification folds are stratified (each class spread over the folds as evenly as its count
allows), regression folds plain; both are shuffled by the seed, so a sweep over ``data.fold``
with one seed sees k disjoint validation parts that together cover the training split once.
"""

from __future__ import annotations

import numpy as np

from rnnlab.utils.errors import ConfigError, DataError


def check_fold_settings(folds: int | None, fold: int) -> None:
    """Refuse fold settings that cannot select a fold (config values, before any data is read)."""
    if folds is None:
        if fold != 0:
            raise ConfigError(
                f"data.fold={fold} selects a cross-validation fold, but data.folds is null; "
                "set data.folds=k (k >= 2) too, or leave data.fold out"
            )
        return
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"data.folds must be an integer >= 2 (or null: no folds), got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(
            f"data.fold={fold!r} is not a fold of data.folds={folds}; choose data.fold from "
            f"0 to {folds - 1}"
        )


def fold_split(
    labels: np.ndarray, folds: int, fold: int, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The sorted (train, val) indices of fold ``fold`` of ``folds``: fold ``fold`` validates,
    the others train. ``stratify`` spreads each class of ``labels`` over the folds."""
    check_fold_settings(folds, fold)
    n = len(labels)
    if n < folds:
        raise DataError(
            f"the training split has {n} samples, fewer than data.folds={folds}; "
            f"lower data.folds to at most {n}"
        )
    if stratify:
        classes, counts = np.unique(labels, return_counts=True)
        fewest = int(counts.argmin())
        if counts[fewest] < folds:
            raise DataError(
                f"class {str(classes[fewest])!r} has {counts[fewest]} training samples, fewer "
                f"than data.folds={folds}, so some fold would validate without it; lower "
                f"data.folds to at most {counts[fewest]}"
            )
    # imported here: scikit-learn's model_selection costs ~0.1 s of every run's start-up
    from sklearn.model_selection import KFold, StratifiedKFold

    # seeds are any int in the config; numpy's generators take 0 .. 2**32 - 1
    state = seed % 2**32
    splitter: KFold | StratifiedKFold = (
        StratifiedKFold(folds, shuffle=True, random_state=state)
        if stratify
        else KFold(folds, shuffle=True, random_state=state)
    )
    train_idx, val_idx = list(splitter.split(np.zeros(n), labels))[fold]
    return np.sort(train_idx), np.sort(val_idx)

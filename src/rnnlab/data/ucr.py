"""UCR/UEA archive sources, read with sktime: shipped files offline, others through its download."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from rnnlab.utils.errors import DataError, first_line

Split = tuple[list[torch.Tensor], np.ndarray]


def archive_names() -> set[str]:
    """Every data set name sktime knows in the UCR/UEA classification archive."""
    from sktime.datasets import tsc_dataset_names as names

    return set(names.univariate) | set(names.multivariate)


def _data_root() -> Path:
    """The folder of data sets that ship inside the installed sktime."""
    import sktime.datasets

    return Path(sktime.datasets.__file__).parent / "data"


def shipped_names() -> list[str]:
    """Archive data sets whose files ship inside the installed sktime (usable offline)."""
    known = archive_names()  # the folder also holds regression and test-only sets
    return sorted(p.name for p in _data_root().iterdir() if p.name in known)


def _to_tensors(frame: object, labels: np.ndarray, where: str) -> Split:
    """sktime's nested frame (one pd.Series per sample and channel) -> (time, channels) tensors."""
    sequences = []
    for i, row in enumerate(frame.itertuples(index=False)):  # type: ignore[attr-defined]
        channels = [np.asarray(cell, dtype=np.float32) for cell in row]
        lengths = {len(c) for c in channels}
        if len(lengths) != 1:
            raise DataError(
                f"{where} sample {i}: channels have different lengths {sorted(lengths)}; "
                "every channel of a sample must have the same number of time steps"
            )
        sequences.append(torch.from_numpy(np.stack(channels, axis=-1)))
    return sequences, np.asarray(labels).astype(str)


def _has_class_labels(path: Path) -> bool:
    """Whether a .ts header declares class labels (regression files declare a target instead)."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            words = line.strip().lower().split()
            if words[:1] == ["@data"]:
                return False
            if words[:2] == ["@classlabel", "true"]:
                return True
    return False


def load_ts_file(path: str | Path, where: str | None = None) -> Split:
    """Read a labelled .ts file (the archive's format) into sequences and string labels;
    ``where`` names the data in error messages (default: the path)."""
    from sktime.datasets import load_from_tsfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; check data.train_file / data.test_file")
    if not _has_class_labels(path):
        raise DataError(
            f"{path} declares no class labels ('@classLabel true <labels>' before @data); "
            "classification needs a labelled .ts file"
        )
    try:
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    except Exception as exc:  # sktime raises several types for malformed files
        raise DataError(f"cannot read {path} as a labelled .ts file: {first_line(exc)}") from exc
    return _to_tensors(frame, labels, where or str(path))


def load_archive(name: str, split: str) -> Split:
    """Load one split ('train' or 'test') of an archive data set by name: from the files that
    ship inside sktime when present, else through sktime's download."""
    shipped_file = _data_root() / name / f"{name}_{split.upper()}.ts"
    if shipped_file.is_file():  # skips sktime's name lists, which cost a second to import
        return load_ts_file(shipped_file, where=f"{name} {split}")
    from sktime.datasets import load_UCR_UEA_dataset

    shipped = shipped_names()
    if name not in archive_names():
        raise DataError(
            f"unknown UCR/UEA data set {name!r}; set data.name to an archive name "
            f"(shipped offline: {', '.join(shipped)}) "
            "or point data.train_file/test_file at .ts files"
        )
    try:
        with warnings.catch_warnings():
            # sktime advertises an optional download mirror on every call; not our user's concern
            warnings.filterwarnings("ignore", message=".*HuggingFaceDownloader.*")
            frame, labels = load_UCR_UEA_dataset(name, split=split, return_type="nested_univ")
    except Exception as exc:
        raise DataError(
            f"could not load {name!r} ({split}): {first_line(exc)}; it is not shipped with "
            f"sktime, so it needs a network download (shipped offline: {', '.join(shipped)})"
        ) from exc
    return _to_tensors(frame, labels, f"{name} {split}")

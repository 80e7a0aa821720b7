"""UCR/UEA archive sources, read with sktime: shipped files offline, others through its download."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rnnlab.data.inputs import DEFAULT_MAX_FILE_MB, RAISE_LIMIT, read_input
from rnnlab.data.memory import check_file_fits
from rnnlab.data.normalize import float32_issue, outside_float32
from rnnlab.data.ragged import PackedSequences, offsets_of
from rnnlab.data.ts_stream import TsStream
from rnnlab.utils.errors import DataError, first_line

Split = tuple[Sequence[torch.Tensor], np.ndarray | None]


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


def _to_tensors(frame: object, where: str) -> PackedSequences:
    """sktime's nested frame (one pd.Series per sample and channel) -> (time, channels) float64
    sequences packed in one array (``check_sequences`` checks their values, then makes them
    float32 in one conversion)."""
    cells = frame.to_numpy(dtype=object)  # type: ignore[attr-defined]
    if cells.ndim != 2 or not cells.size:
        return PackedSequences(
            torch.zeros(0, cells.shape[-1] if cells.ndim == 2 else 0, dtype=torch.float64),
            np.zeros(1, dtype=np.int64),
        )
    lengths = np.fromiter((len(c) for c in cells.ravel()), dtype=np.int64, count=cells.size)
    lengths = lengths.reshape(cells.shape)
    uneven = np.flatnonzero((lengths != lengths[:, :1]).any(axis=1))
    if len(uneven):
        i = int(uneven[0])
        raise DataError(
            f"{where} sample {i}: channels have different lengths {sorted(set(lengths[i]))}; "
            "every channel of a sample must have the same number of time steps"
        )
    offsets = offsets_of(lengths[:, 0])
    values = np.empty((int(offsets[-1]), cells.shape[1]), dtype=np.float64)
    for i, row in enumerate(cells):
        start, end = offsets[i], offsets[i + 1]
        for channel, cell in enumerate(row):
            values[start:end, channel] = np.asarray(cell, dtype=np.float64)
    return PackedSequences(torch.from_numpy(values), offsets)


LABEL_KINDS = {"class": "@classLabel true <labels>", "target": "@targetLabel true"}


def labels_of(values: np.ndarray, kind: str, where: str, first: int = 0) -> np.ndarray:
    """A file's labels (raw text, ``first`` the index of the first): class names as strings,
    or regression targets as float64, refused in one line where not finite or beyond float32."""
    if kind == "class":
        return values.astype(str)
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        raise DataError(
            f"{where} sample {first + bad[0]} has target {values[bad[0]]!r}, not a finite number; "
            "regression targets must be real numbers"
        )
    bad = np.flatnonzero(outside_float32(numbers))
    if len(bad):
        raise DataError(
            f"{where} sample {first + bad[0]} has target {numbers[bad[0]]:g}, "
            f"{float32_issue(numbers[bad[0]], 'y')}; rescale the targets"
        )
    return numbers


def load_ts_file(
    path: str | Path,
    where: str | None = None,
    labels: str | None = "class",
    setting: str = "data.train_file",
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    limit_advice: str = RAISE_LIMIT,
) -> Split:
    """Read a .ts file (the archive's format) into (time, channels) float64 sequences and their
    labels, in memory (``ts_cache`` builds the disk cache instead).

    ``labels`` is what the file must declare: 'class' (string labels), 'target' (one real value
    per sample) or None (either or neither: unlabelled files give ``None`` labels, as for
    prediction). ``where`` names the data in error messages (default: the path); ``setting``
    the setting that named the file, and ``max_file_mb`` its size limit
    (``inputs.read_input``). The file is streamed (``ts_stream``); one with timestamps is read
    by sktime.
    """
    path = Path(path)
    where = where or str(path)
    check_file_fits(setting, path, "ts")
    with TsStream(path, setting, max_file_mb, limit_advice, where) as stream:
        check_label_kind(path, stream.header.kind, labels)
        if stream.header.timestamps:
            return _load_with_sktime(
                path, where, stream.header.kind, setting, max_file_mb, limit_advice
            )
        values, lengths, raw_labels = [], [], []
        for block in stream.blocks():
            values.append(block.values)
            lengths.append(block.lengths)
            raw_labels += block.labels or []
    packed = PackedSequences(
        torch.from_numpy(np.concatenate(values)), offsets_of(np.concatenate(lengths))
    )
    if not stream.header.labelled:
        return packed, None
    return packed, labels_of(
        np.asarray(raw_labels, dtype=object), stream.header.kind or "class", where
    )


def check_label_kind(path: str | Path, kind: str | None, labels: str | None) -> None:
    """Refuse a file whose header does not declare the labels the task needs."""
    if labels is not None and kind != labels:
        raise DataError(
            f"{path} declares {kind or 'no'} labels; "
            f"this task needs '{LABEL_KINDS[labels]}' in the header before @data"
        )


def _load_with_sktime(
    path: Path, where: str, kind: str | None, setting: str, max_file_mb: float, limit_advice: str
) -> Split:
    """sktime's reading of a .ts file, for what ``ts_stream`` does not read (timestamps)."""
    from sktime.datasets import load_from_tsfile_to_dataframe

    raw = read_input(path, setting, max_file_mb, limit_advice)
    # sktime reads a path: it gets a private copy of the bytes already read (and bounded), so a
    # file that changes or grows meanwhile is never read again
    with tempfile.TemporaryDirectory(prefix="rnnlab-ts-") as folder:
        copy = Path(folder) / "data.ts"
        copy.write_bytes(raw)
        del raw
        try:
            frame = load_from_tsfile_to_dataframe(str(copy), return_separate_X_and_y=False)
        except Exception as exc:  # sktime raises several types for malformed files
            raise DataError(f"cannot read {path} as a .ts file: {first_line(exc)}") from exc
    values = None
    if "class_vals" in frame.columns:
        values = labels_of(frame.pop("class_vals").to_numpy(), kind or "class", where)
    return _to_tensors(frame, where), values


def load_archive(name: str, split: str, labels: str = "class") -> Split:
    """Load one split ('train' or 'test') of an archive data set by name: from the files that
    ship inside sktime when present, else (classification only) through sktime's download."""
    shipped_file = _data_root() / name / f"{name}_{split.upper()}.ts"
    if shipped_file.is_file():  # skips sktime's name lists, which cost a second to import
        return load_ts_file(shipped_file, f"{name} {split}", labels, setting="data.name")
    if labels == "target":
        raise DataError(
            f"regression data set {name!r} does not ship with sktime (shipped: Covid3Month, "
            "Tecator); download its .ts files and set data.train_file/test_file"
        )
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
    return _to_tensors(frame, f"{name} {split}"), np.asarray(labels).astype(str)

"""Shared machinery of the DataModules for whole sequences with one label each (classification,
sequence regression): official train/test files, a seeded validation split of train, inputs
normalised with training statistics, padded batches with CPU lengths, and prediction inputs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnlab.batch import Batch
from rnnlab.data.base import TaskDataModule
from rnnlab.data.cache import usable_folder
from rnnlab.data.collate import SequenceDataset, bucket_sampler, pad_collate
from rnnlab.data.folds import check_fold_settings, fold_split
from rnnlab.data.inputs import DEFAULT_MAX_FILE_MB, RAISE_LIMIT, STORED_LIMIT, check_max_file_mb
from rnnlab.data.normalize import (
    SEQUENCE_SCALES,
    Normalizer,
    float32_issue,
    outside_float32,
    scale_sequence,
)
from rnnlab.data.ragged import LazySequences, MappedSequences, PackedSequences, lengths_of, take
from rnnlab.data.ts_cache import cached_ts_file, fit_normalizer
from rnnlab.data.ucr import Split, load_archive, load_ts_file
from rnnlab.utils.errors import ConfigError, DataError, choice

# The split's mark at the end of a file's stem: MyData_TRAIN.ts, mydata.train.ts, train.ts.
_TRAIN_MARK = re.compile(r"(^|[_.\-])train$", re.IGNORECASE)


def files_data_name(train_file: str | Path) -> str:
    """The name of the user's own data set: the train file's stem without its split mark
    (``MyData_TRAIN.ts`` -> ``MyData``), or the folder's name for a bare ``train.ts``. Only
    letters, digits and ``_.+-`` are kept: the name goes into the run's config, where ``${``
    would read as an interpolation (and a checkpoint holding one is refused)."""
    path = Path(train_file)
    name = _TRAIN_MARK.sub("", path.stem) or path.parent.name
    return re.sub(r"[^\w.+-]+", "_", name).strip("_") or "data"


def check_sequences(sequences: Sequence[torch.Tensor], where: str) -> Sequence[torch.Tensor]:
    """Reject what would otherwise fail deep inside torch (empty sequences, values that are not
    finite or do not fit float32 training); return the sequences as float32. Packed sequences
    (``ragged.PackedSequences``, as the .ts loader gives) are checked in a few array operations
    and converted in one; sequences read into the cache (``ragged.MappedSequences``) were
    checked and converted while read, and raise the error of the first one refused."""
    if isinstance(sequences, MappedSequences):
        if sequences.refused is not None:
            index, values = sequences.refused
            _check_one(torch.from_numpy(values), index, where)
        return sequences
    if isinstance(sequences, PackedSequences):
        first = _first_bad(sequences)
        if first is not None:
            _check_one(sequences[first], first, where)
        return sequences.as_float32()
    for i, seq in enumerate(sequences):
        _check_one(seq, i, where)
    return [seq.float() for seq in sequences]


# rows of packed values checked at once: bounds the temporary arrays of the checks
_CHECK_ROWS = 1 << 20


def _first_bad(packed: PackedSequences) -> int | None:
    """The first sequence that ``_check_one`` refuses, if any."""
    values = packed.values.numpy()
    candidates = np.flatnonzero(packed.lengths == 0)[:1].tolist()
    for start in range(0, len(values), _CHECK_ROWS):
        chunk = values[start : start + _CHECK_ROWS]
        flagged = ~np.isfinite(chunk).all(axis=1) | outside_float32(chunk).any(axis=1)
        rows = np.flatnonzero(flagged)[:1] + start
        if len(rows):
            candidates += packed.sample_at(rows).tolist()
            break
    return min(candidates) if candidates else None


def _check_one(seq: torch.Tensor, i: int, where: str) -> None:
    if seq.shape[0] == 0:
        raise DataError(f"{where} sample {i} has length 0; remove it or give it time steps")
    bad = ~torch.isfinite(seq)
    if bad.any():
        step, channel = (int(v) for v in bad.nonzero()[0])
        raise DataError(
            f"{where} sample {i} has NaN/inf at time step {step}, channel {channel}; "
            "impute or drop such values before training"
        )
    unfit = outside_float32(seq.double().numpy())
    if unfit.any():
        step, channel = (int(v) for v in np.argwhere(unfit)[0])
        value = float(seq[step, channel])
        raise DataError(
            f"{where} sample {i} has value {value:g} at time step {step}, channel "
            f"{channel}, {float32_issue(value)}; rescale that channel"
        )


class _Normalised(LazySequences):
    """Sequences normalised when read, one at a time: a loader's batch costs its own copy
    only, rather than every loader build a normalised copy of the whole split."""

    def __init__(
        self, raw: Sequence[torch.Tensor], transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        self.raw, self.transform = raw, transform

    def __len__(self) -> int:
        return len(self.raw)

    def item(self, index: int) -> torch.Tensor:
        return self.transform(self.raw[index])


class SequenceDataModule(TaskDataModule):
    """Official train split -> seeded train/val; official test split kept for test.

    Subclasses say what a label is (``label_kind``: what the .ts header must declare,
    ``target_dtype``, ``fit_labels``, ``encode``, ``holdout_indices``, ``stratified``).
    With ``folds`` set, fold ``fold`` of a seeded k-fold split of the official train split
    validates instead of the ``val_fraction`` share (``rnnlab.data.folds``); the test split is
    never part of any fold.
    The input normaliser is fitted on the train part only; it and the subclass's label state are
    this module's ``state_dict`` and so travel in every checkpoint, and a module that loaded them
    never refits. Normalisation is applied when loaders are built, which Lightning does after
    restoring a checkpoint, so restored statistics always win.
    """

    split_settings = TaskDataModule.split_settings | {
        "val_fraction",
        "folds",
        "fold",
        "bucket",
        "cache_dir",
    }
    split_state: ClassVar[frozenset[str]] = frozenset({"normalizer"})
    # The archive data set of the data config. Given with the user's own files, it is only the
    # config's default, not a name for them: the run is named after the files instead.
    default_name: ClassVar[str | None] = None
    label_kind: str  # 'class' or 'target' (ucr.LABEL_KINDS)
    target_dtype: torch.dtype
    stratified: bool  # whether validation parts keep the class proportions

    def __init__(
        self,
        name: str | None = None,
        train_file: str | None = None,
        test_file: str | None = None,
        val_fraction: float = 0.2,
        folds: int | None = None,
        fold: int = 0,
        normalize: str = "zscore",
        sequence_scale: str = "none",
        batch_size: int = 32,
        bucket: bool = False,
        num_workers: int = 0,
        max_file_mb: float = DEFAULT_MAX_FILE_MB,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.max_file_mb = check_max_file_mb(max_file_mb)
        if (train_file is None) != (test_file is None):
            raise ConfigError("set both data.train_file and data.test_file, or neither")
        if train_file is None and not name:
            raise ConfigError("set data.name (an archive data set) or data.train_file/test_file")
        if train_file is None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", str(name)):
            raise ConfigError(
                f"data.name={name!r} is not an archive data set name (letters, digits, _ and -); "
                "point data.train_file/test_file at your own .ts files"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must lie in (0, 1), got {val_fraction}")
        check_fold_settings(folds, fold)
        if train_file is not None and name in (None, self.default_name):
            name = files_data_name(train_file)
        self.name, self.train_file, self.test_file = name, train_file, test_file
        self.val_fraction = val_fraction
        self.folds, self.fold = folds, fold
        self.bucket = bucket
        # the user's files are read through the disk cache there (ts_cache); None: in memory
        self.cache_dir = cache_dir
        self.normalizer = Normalizer(normalize)
        self.sequence_scale = choice(
            sequence_scale, SEQUENCE_SCALES, "data.sequence_scale", "per-sequence scaling"
        )
        self.splits: dict[str, tuple[Sequence[torch.Tensor], torch.Tensor]] = {}
        # the labels of a prediction input that has them, kept for the output
        self.predict_labels: np.ndarray | None = None

    # --- what a label is (subclasses) --------------------------------------------------------
    def fit_labels(self, labels: np.ndarray) -> None:
        """Learn label state from the raw training labels (class list, target statistics)."""

    def encode(self, labels: np.ndarray, where: str) -> torch.Tensor:
        raise NotImplementedError

    def split_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (train, val) indices of the official train split: fold ``fold`` of ``folds``
        when cross-validating, else a seeded ``val_fraction`` share."""
        if self.folds is not None:
            return fold_split(labels, self.folds, self.fold, self.seed, self.stratified)
        return self.holdout_indices(labels)

    def holdout_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        return pad_collate(items)

    def display_name(self) -> str:
        return str(self.name)

    def settled_config(self) -> dict[str, Any]:
        return {"name": self.name}

    # --- loading -----------------------------------------------------------------------------
    def load_raw(self, split: str) -> Split:
        """Raw (un-normalised) sequences and labels of the official 'train' or 'test' split."""
        if self.train_file is not None:
            path = self.train_file if split == "train" else self.test_file
            setting = "data.train_file" if split == "train" else "data.test_file"
            folder = usable_folder(self.cache_dir)
            if folder is not None:
                found = cached_ts_file(
                    folder, str(path), self.label_kind, setting, self.max_file_mb, RAISE_LIMIT
                )
                if found is not None:  # else a file that is not streamed (timestamps)
                    return found[0]
            return load_ts_file(
                str(path), labels=self.label_kind, setting=setting, max_file_mb=self.max_file_mb
            )
        return load_archive(str(self.name), split, labels=self.label_kind)

    def where(self, split: str) -> str:
        """How error messages name a split."""
        if self.train_file is not None:
            return str(self.train_file if split == "train" else self.test_file)
        return f"{self.name} {split}"

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if "predict" not in self.splits:
                raise ConfigError("no prediction input: set input=<file> for rnnlab.predict")
            return
        if self.splits.keys() >= {"train", "val", "test"}:
            return
        train_x, train_labels = self.load_raw("train")
        test_x, test_labels = self.load_raw("test")
        assert train_labels is not None and test_labels is not None
        train_x = check_sequences(train_x, self.where("train"))
        test_x = check_sequences(test_x, self.where("test"))
        train_idx, val_idx = self.split_indices(train_labels)
        self.fit_labels(train_labels[train_idx])
        targets = self.encode(train_labels, self.where("train"))
        self.splits = {
            "train": (take(train_x, train_idx), targets[train_idx]),
            "val": (take(train_x, val_idx), targets[val_idx]),
            "test": (test_x, self.encode(test_labels, self.where("test"))),
        }
        if not self.normalizer.fitted:
            fit_normalizer(self.normalizer, self.splits["train"][0], self.sequence_scale)

    def scaled(self, sequence: torch.Tensor) -> torch.Tensor:
        """A sequence as the fitted normaliser sees it (``data.sequence_scale``)."""
        return scale_sequence(sequence, self.sequence_scale)

    def setup_predict(self, path: str) -> None:
        """Read ``path``: same format as training, labels optional (kept for the output)."""
        if Path(path).suffix.lower() == ".csv":
            raise DataError(
                f"{path} is a CSV file, but this checkpoint is a whole-sequence "
                "model: input must be a .ts file like the one it was trained on"
            )
        sequences, labels = load_ts_file(
            path,
            labels=None,
            setting="input",
            max_file_mb=self.max_file_mb,
            limit_advice=STORED_LIMIT,
        )
        sequences = check_sequences(sequences, path)
        channels = {int(s.shape[1]) for s in sequences}
        expected = int(self.normalizer.shift.numel())  # type: ignore[union-attr]
        if channels != {expected}:
            raise DataError(
                f"{path} has {sorted(channels)} channel(s) per sample; the model "
                f"was trained on {expected}"
            )
        self.predict_labels = labels
        placeholder = torch.zeros(len(sequences), dtype=self.target_dtype)
        self.splits["predict"] = (sequences, placeholder)

    # --- shapes the model needs --------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return int(self.splits["train"][0][0].shape[1])

    def model_settings(self) -> dict[str, Any]:
        """Values the model config cannot know before the data is read (written into it)."""
        return {"encoder": {"input_size": self.num_features}}

    # --- loaders -----------------------------------------------------------------------------
    def dataset(self, split: str) -> SequenceDataset:
        sequences, targets = self.splits[split]
        inputs = _Normalised(sequences, lambda s: self.normalizer.transform(self.scaled(s)))
        return SequenceDataset(inputs, targets)

    def split_loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.dataset(split)
        if self.bucket:
            lengths = lengths_of(self.splits[split][0])
            sampler = bucket_sampler(lengths, self.batch_size, shuffle=shuffle, seed=self.seed)
            return self.loader(data, shuffle, batch_sampler=sampler)
        return self.loader(data, shuffle)

    def predict_dataloader(self) -> DataLoader:
        return self.split_loader("predict", shuffle=False)

    # --- checkpoint state (plain types and tensors: loads with weights_only=True) -----------
    def state_dict(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.normalizer.load_state_dict(state_dict["normalizer"])

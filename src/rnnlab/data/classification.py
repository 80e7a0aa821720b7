"""DataModule for labelled sequences: the UCR/UEA archive by name, or the user's own .ts files."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnlab.data.collate import BucketBatchSampler, SequenceDataset, pad_collate
from rnnlab.data.normalize import Normalizer
from rnnlab.data.ucr import Split, load_archive, load_ts_file
from rnnlab.utils.errors import ConfigError, DataError


def check_sequences(sequences: list[torch.Tensor], where: str) -> None:
    """Reject what would otherwise fail deep inside torch: empty sequences and non-finite values."""
    for i, seq in enumerate(sequences):
        if seq.shape[0] == 0:
            raise DataError(f"{where} sample {i} has length 0; remove it or give it time steps")
        bad = ~torch.isfinite(seq)
        if bad.any():
            step, channel = (int(v) for v in bad.nonzero()[0])
            raise DataError(
                f"{where} sample {i} has NaN/inf at time step {step}, channel {channel}; "
                "impute or drop such values before training"
            )


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train, val) index split; every class must appear in both parts."""
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls, count in zip(classes, counts, strict=True):
        n_val = round(count * val_fraction)
        if n_val < 1 or n_val >= count:
            raise DataError(
                f"class {str(cls)!r} has {count} training samples: too few to put at least one "
                f"in both train and validation with data.val_fraction={val_fraction}; "
                "change data.val_fraction or add samples"
            )
        members = rng.permutation(np.flatnonzero(labels == cls))
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


class ClassificationDataModule(L.LightningDataModule):
    """Official train split -> stratified seeded train/val; official test split kept for test.

    The normaliser is fitted on the train part only. Its statistics and the class list are this
    module's ``state_dict`` and so travel in every checkpoint; a module that loaded them never
    refits. Normalisation is applied when loaders are built, which Lightning does after restoring
    a checkpoint, so restored statistics always win.
    """

    def __init__(
        self,
        name: str | None = "JapaneseVowels",
        train_file: str | None = None,
        test_file: str | None = None,
        val_fraction: float = 0.2,
        normalize: str = "zscore",
        batch_size: int = 32,
        bucket: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if (train_file is None) != (test_file is None):
            raise ConfigError("set both data.train_file and data.test_file, or neither")
        if train_file is None and not name:
            raise ConfigError("set data.name (an archive data set) or data.train_file/test_file")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must lie in (0, 1), got {val_fraction}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.name, self.train_file, self.test_file = name, train_file, test_file
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.bucket = bucket
        self.num_workers = num_workers
        self.seed = seed
        self.normalizer = Normalizer(normalize)
        self.classes: list[str] | None = None
        self.splits: dict[str, tuple[list[torch.Tensor], torch.Tensor]] = {}

    # --- loading -----------------------------------------------------------------------------
    def load_raw(self, split: str) -> Split:
        """Raw (un-normalised) sequences and string labels of the official 'train' or 'test'."""
        if self.train_file is not None:
            return load_ts_file(self.train_file if split == "train" else self.test_file)
        return load_archive(str(self.name), split)

    def _where(self, split: str) -> str:
        if self.train_file is not None:
            return str(self.train_file if split == "train" else self.test_file)
        return f"{self.name} {split}"

    def _encode(self, labels: np.ndarray, where: str) -> torch.Tensor:
        assert self.classes is not None
        index = {c: i for i, c in enumerate(self.classes)}
        unseen = sorted(str(u) for u in set(labels) - set(index))
        if unseen:
            raise DataError(
                f"{where} has labels {unseen} that the training split lacks; "
                f"known classes: {self.classes}"
            )
        return torch.tensor([index[c] for c in labels], dtype=torch.int64)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train_x, train_labels = self.load_raw("train")
        test_x, test_labels = self.load_raw("test")
        check_sequences(train_x, self._where("train"))
        check_sequences(test_x, self._where("test"))
        if self.classes is None:
            self.classes = sorted(str(c) for c in set(train_labels))
        if len(self.classes) < 2:
            raise DataError(f"{self._where('train')} has one class only; classification needs two")
        train_idx, val_idx = stratified_split(train_labels, self.val_fraction, self.seed)
        targets = self._encode(train_labels, self._where("train"))
        self.splits = {
            "train": ([train_x[i] for i in train_idx], targets[train_idx]),
            "val": ([train_x[i] for i in val_idx], targets[val_idx]),
            "test": (test_x, self._encode(test_labels, self._where("test"))),
        }
        if not self.normalizer.fitted:
            self.normalizer.fit(self.splits["train"][0])

    # --- shapes the model needs --------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return int(self.splits["train"][0][0].shape[1])

    @property
    def num_classes(self) -> int:
        assert self.classes is not None
        return len(self.classes)

    # --- loaders -----------------------------------------------------------------------------
    def dataset(self, split: str) -> SequenceDataset:
        sequences, targets = self.splits[split]
        return SequenceDataset([self.normalizer.transform(s) for s in sequences], targets)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.dataset(split)
        common: dict[str, Any] = {
            "collate_fn": pad_collate,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
        }
        if self.bucket:
            sampler = BucketBatchSampler(
                [len(s) for s in data.sequences], self.batch_size, shuffle=shuffle, seed=self.seed
            )
            return DataLoader(data, batch_sampler=sampler, **common)
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            data, batch_size=self.batch_size, shuffle=shuffle, generator=generator, **common
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def transfer_batch_to_device(
        self, batch: tuple[torch.Tensor, ...], device: torch.device, dataloader_idx: int
    ) -> tuple[torch.Tensor, ...]:
        """Move inputs and targets; keep ``lengths`` on the CPU, where packing needs them (a
        device copy would cost a synchronising transfer back in every forward)."""
        x, lengths, y = batch
        return x.to(device), lengths, y.to(device)

    # --- checkpoint state (plain types and tensors: loads with weights_only=True) -----------
    def state_dict(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer.state_dict(), "classes": list(self.classes or [])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.normalizer.load_state_dict(state_dict["normalizer"])
        self.classes = list(state_dict["classes"])

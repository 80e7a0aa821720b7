"""DataModule for sequence regression: one real target per sequence (the UCR/UEA extrinsic
regression archive's .ts files, e.g. Covid3Month, or the user's own)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnlab.batch import Batch, TargetScaling
from rnnlab.data.collate import pad_collate
from rnnlab.data.normalize import Normalizer
from rnnlab.data.sequences import SequenceDataModule
from rnnlab.utils.errors import DataError


class RegressionDataModule(SequenceDataModule):
    """Sequences with a real-valued target. The validation split is a seeded random share of the
    official train split. Targets are normalised like inputs (statistics from the train part,
    saved in the checkpoint); batches carry them in original units plus the statistics, so the
    model computes its loss on the normalised scale and every metric in original units
    (``Batch.scaling``).

    Batches also carry the ``train_mean`` baseline (the training targets' mean), the predictor
    every regression model must beat.
    """

    split_state = frozenset({"normalizer", "target_normalizer", "train_mean"})
    label_kind = "target"
    target_dtype = torch.float32
    stratified = False

    default_name = "Covid3Month"

    def __init__(self, name: str | None = default_name, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.target_normalizer = Normalizer(self.normalizer.method)
        self.train_mean: torch.Tensor | None = None

    def holdout_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(labels)
        n_val = round(n * self.val_fraction)
        if n_val < 1 or n_val >= n:
            raise DataError(
                f"{self.where('train')} has {n} samples: too few for a validation share of "
                f"data.val_fraction={self.val_fraction}; change it or add samples"
            )
        order = np.random.default_rng(self.seed).permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def fit_labels(self, labels: np.ndarray) -> None:
        if self.train_mean is None:
            targets = torch.tensor(np.asarray(labels, dtype=np.float32))[:, None]
            self.target_normalizer.fit([targets])
            self.train_mean = targets.mean(dim=0)

    def encode(self, labels: np.ndarray, where: str) -> torch.Tensor:
        return torch.tensor(np.asarray(labels, dtype=np.float32))

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        batch = pad_collate(items)
        size = len(batch)
        shift, scale = self.target_normalizer.shift, self.target_normalizer.scale
        assert shift is not None and scale is not None and self.train_mean is not None
        batch.y = batch.targets().reshape(size, 1, 1)  # (batch, horizon 1, one target)
        batch.scaling = TargetScaling(shift.expand(size, 1), scale.expand(size, 1))
        batch.baselines = {"train_mean": self.train_mean.expand(size, 1, 1)}
        return batch

    def baseline_names(self) -> tuple[str, ...]:
        return ("train_mean",)

    def model_settings(self) -> dict[str, Any]:
        return {**super().model_settings(), "horizon": 1, "num_targets": 1}

    def prediction_frame(self, outputs: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
        """One row per sample: the prediction in original units (and the file's own target,
        when it has one)."""
        predictions = torch.cat([o["prediction"] for o in outputs]).reshape(-1).numpy()
        frame = pd.DataFrame({"sample": range(len(predictions)), "prediction": predictions})
        if self.predict_labels is not None:
            frame["target"] = self.predict_labels
        return frame

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "target_normalizer": self.target_normalizer.state_dict(),
            "train_mean": self.train_mean,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.target_normalizer.load_state_dict(state_dict["target_normalizer"])
        self.train_mean = state_dict["train_mean"]

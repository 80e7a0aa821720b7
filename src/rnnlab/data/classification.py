"""DataModule for labelled sequences: the UCR/UEA archive by name, or the user's own .ts files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnlab.data.sequences import SequenceDataModule
from rnnlab.utils.errors import DataError


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


class ClassificationDataModule(SequenceDataModule):
    """Sequences with class labels; the validation split is stratified, and the class list
    travels in the checkpoint beside the normaliser."""

    label_kind = "class"
    target_dtype = torch.int64
    stratified = True

    default_name = "JapaneseVowels"

    def __init__(self, name: str | None = default_name, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.classes: list[str] | None = None

    def split_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(set(labels)) < 2:
            raise DataError(f"{self.where('train')} has one class only; classification needs two")
        return super().split_indices(labels)

    def holdout_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return stratified_split(labels, self.val_fraction, self.seed)

    def fit_labels(self, labels: np.ndarray) -> None:
        if self.classes is None:
            self.classes = sorted(str(c) for c in set(labels))

    def encode(self, labels: np.ndarray, where: str) -> torch.Tensor:
        assert self.classes is not None
        index = {c: i for i, c in enumerate(self.classes)}
        unseen = sorted(str(u) for u in set(labels) - set(index))
        if unseen:
            raise DataError(
                f"{where} has labels {unseen} that the training split lacks; "
                f"known classes: {self.classes}"
            )
        return torch.tensor([index[c] for c in labels], dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        assert self.classes is not None
        return len(self.classes)

    def model_settings(self) -> dict[str, Any]:
        # numbers only: class names are data and never enter the config (its resolver would
        # read a label such as '${seed}' as an interpolation); they travel in state_dict()
        return {**super().model_settings(), "num_classes": self.num_classes}

    def prediction_frame(self, outputs: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
        """One row per sample: predicted label and every class probability (and the file's own
        label, when it has one)."""
        probabilities = torch.cat([o["probabilities"] for o in outputs]).numpy()
        frame = pd.DataFrame({"sample": range(len(probabilities))})
        frame["predicted"] = [self.classes[i] for i in probabilities.argmax(axis=1)]  # type: ignore[index]
        for i, name in enumerate(self.classes or []):
            frame[f"p_{name}"] = probabilities[:, i]
        if self.predict_labels is not None:
            frame["label"] = self.predict_labels
        return frame

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "classes": list(self.classes or [])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.classes = list(state_dict["classes"])

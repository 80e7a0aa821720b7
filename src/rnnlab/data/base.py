"""The task contract: what ``train``, ``eval`` and ``predict`` rely on from every DataModule (the
one batch type every model receives is ``rnnlab.batch.Batch``).

A task is a DataModule (a subclass of ``TaskDataModule``) and a LightningModule that reads
``Batch``. The entry points never look inside either: they call ``setup``, read
``model_settings()`` into the model config, check the model's configured baselines against
``baseline_names()``, save ``state_dict()`` in checkpoints, and for predictions call
``setup_predict(path)`` and ``prediction_frame(outputs)``. Predicting from a file is optional:
a task without a prediction file format leaves both out, and ``setup_predict`` refuses in one
line (``instead_of_predict`` says what to run instead).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from rnnlab.batch import Batch
from rnnlab.data.collate import EpochRandomSampler
from rnnlab.utils.errors import ConfigError


def check_loader_settings(batch_size: int, num_workers: int, seed: int) -> None:
    """Refuse loader settings no DataLoader or sampler could use (one line each)."""
    if batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
    # numpy's generators (validation splits, folds, window lengths) refuse negative seeds
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"data.seed must be an integer >= 0, got {seed!r}")


class TaskDataModule(L.LightningDataModule):
    """Base of every rnnlab DataModule: the loader settings (``batch_size``, ``num_workers``,
    ``seed``: checked here, once for every task), shared loaders and device transfer, and the
    methods each task provides (``NotImplementedError`` below until it does).

    Fitted state (normalisers, class lists) must be plain types and tensors in ``state_dict()``
    (checkpoints load with ``weights_only=True``), and a module that loaded it never refits.
    """

    def __init__(self, batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        check_loader_settings(batch_size, num_workers, seed)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    # An ensemble (rnnlab.ensemble) averages members that saw the same test split. Members may
    # differ in the data settings that only choose which training samples validate or how
    # batches are drawn, and in the limit on input files (data.max_file_mb), which changes
    # what may be read, not what was; every other data setting must match.
    split_settings: ClassVar[frozenset[str]] = frozenset(
        {"seed", "batch_size", "num_workers", "max_file_mb"}
    )
    # Parts of ``state_dict()`` fitted on the samples that trained, so different per seed or
    # fold: each member applies its own. Every other part must be equal between members.
    split_state: ClassVar[frozenset[str]] = frozenset()
    # What a task without a prediction file format offers instead, in rnnlab.predict's refusal.
    instead_of_predict: ClassVar[str] = "evaluate its checkpoint with rnnlab.eval instead"

    # --- what each task provides -------------------------------------------------------------
    def model_settings(self) -> dict[str, Any]:
        """Numbers the model config cannot know before the data is read (input size, classes,
        horizon); written into the config, so checkpoints carry them. Never names from the data:
        the config resolver would read a label such as '${seed}' as an interpolation."""
        raise NotImplementedError

    def settled_config(self) -> dict[str, Any]:
        """Data settings this module settled from the others (the name of the user's own files,
        where ``data.name`` was left at its default), written back into ``cfg.data`` so that the
        checkpoint, HParams and the run's saved config name the data as its figures and log do.
        Derived from the settings only, never read from the data."""
        return {}

    def baseline_names(self) -> tuple[str, ...]:
        """The baselines this data puts in ``Batch.baselines`` (a model may only ask for these)."""
        return ()

    def data_metrics(self) -> dict[str, float]:
        """Numbers about how the data was prepared that belong beside the run's metrics (after
        ``setup``): e.g. how many characters fitted an n-gram baseline on a sample."""
        return {}

    def scaled_metrics(self) -> tuple[str, ...]:
        """Metrics that need a per-series scale this data puts in ``Batch.forecast``."""
        return ()

    def setup_predict(self, path: str) -> None:
        """Read ``path``, raw data in the training format, for ``predict_dataloader``. A task
        that predicts implements it with ``predict_dataloader`` and ``prediction_frame``; here,
        a task without a prediction file format refuses in one line."""
        raise ConfigError(f"this task has no prediction file format; {self.instead_of_predict}")

    def use_test_file(self, path: str) -> None:
        """Test on ``path`` instead of the test split (``rnnlab.eval ... data.file=``)."""
        raise ConfigError(
            f"data.file= scores a new text with a language model's checkpoint; this is a "
            f"{type(self).__name__}'s, so leave data.file out"
        )

    def prediction_frame(self, outputs: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
        """The predictions of ``trainer.predict`` as a table in original units (after a task's
        own ``setup_predict``: the base's never lets a run get here)."""
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        """The examples of a split ('train', 'val', 'test', 'predict') in their stored order,
        normalised, for ``loader`` (an ensemble lines its members' test outputs up by it)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Batch:
        raise NotImplementedError

    def display_name(self) -> str:
        """How figure titles name this data: a data set, a shipped series or a file name."""
        return type(self).__name__

    # --- shared ------------------------------------------------------------------------------
    def loader(self, data: Dataset, shuffle: bool, **options: Any) -> DataLoader:
        """A DataLoader of ``data`` with this module's collate and workers. Shuffling follows the
        seed and the epoch only, so a resumed run sees the same batches."""
        if shuffle and "batch_sampler" not in options:
            options["sampler"] = EpochRandomSampler(data, self.seed)  # type: ignore[arg-type]
        if "batch_sampler" not in options:
            options["batch_size"] = self.batch_size
        return DataLoader(
            data,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **options,
        )

    def split_loader(self, split: str, shuffle: bool) -> DataLoader:
        """The DataLoader of a split: ``dataset(split)`` through ``loader``."""
        return self.loader(self.dataset(split), shuffle)

    def train_dataloader(self) -> DataLoader:
        return self.split_loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.split_loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.split_loader("test", shuffle=False)

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)

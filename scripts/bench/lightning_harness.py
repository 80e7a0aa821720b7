"""What the benchmark scripts that train through Lightning share, beside ``harness.py``: the
config composed and the data and model built as ``python -m rnnlab.train`` does, the config's
Trainer without extras, seeding, epoch timing and the machine line of a report."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from harness import sync
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from rnnlab.train import build_data_and_model
from rnnlab.utils.config import config_dir

# What the loop-overhead ablations switch off: no progress bar, logger, checkpointing, sanity
# validation or model summary. The trainer's own callbacks list stays empty.
LEAN_TRAINER: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "logger": False,
}


def add_padded_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--padded",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the encoder's padded path (model.encoder.impl=padded)",
    )


def compose_train(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """Compose ``conf/train.yaml`` with Hydra overrides, as ``python -m rnnlab.train`` would; the
    run directory (a Hydra runtime value outside ``@hydra.main``) is set to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def build(
    overrides: Sequence[str], seed: int, output_dir: str | Path | None = None
) -> tuple[DictConfig, L.LightningDataModule, L.LightningModule]:
    """The config composed with ``seed=<seed>`` and ``overrides``, then the DataModule and the
    model built from it with every RNG seeded, as ``python -m rnnlab.train`` builds them. The
    run directory defaults to the temporary folder: the lean Trainer writes nothing there."""
    cfg = compose_train([f"seed={seed}", *overrides], output_dir or tempfile.gettempdir())
    seed_all(seed)
    datamodule, model = build_data_and_model(cfg)
    return cfg, datamodule, model


def lean_trainer(
    cfg: DictConfig, callbacks: list[L.Callback] | None = None, **overrides: Any
) -> L.Trainer:
    """The config's Trainer (precision, clipping, epochs, accelerator) minus the extras;
    ``overrides`` replace config values (``max_epochs=1``)."""
    return instantiate(cfg.trainer, callbacks=callbacks or [], **{**LEAN_TRAINER, **overrides})


def fit_timed(
    cfg: DictConfig, model: L.LightningModule, datamodule: L.LightningDataModule, **overrides: Any
) -> tuple[EpochTimer, L.Trainer]:
    """Fit ``model`` on the lean Trainer (``overrides`` as for ``lean_trainer``), timing each
    epoch; the timer and the fitted Trainer."""
    timer = EpochTimer()
    trainer = lean_trainer(cfg, callbacks=[timer], **overrides)
    trainer.fit(model, datamodule=datamodule)
    return timer, trainer


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (global RNG drives dropout and the val loader's base seed)."""
    L.seed_everything(seed, workers=True, verbose=False)


class EpochTimer(L.Callback):
    """Wall time of each training epoch's batches: from the epoch start to the end of its last
    training batch (validation excluded), and the number of sequences it trained on."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.sequences: list[int] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(pl_module.device)
        self._start = time.perf_counter()
        self.seconds.append(math.nan)
        self.sequences.append(0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        sync(pl_module.device)
        self.seconds[-1] = time.perf_counter() - self._start
        self.sequences[-1] += len(batch)


def machine() -> str:
    """One line naming the hardware and library versions the numbers come from."""
    device = f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        device += f"; GPU {torch.cuda.get_device_name()}"
    return f"{device}; torch {torch.__version__}, lightning {L.__version__}"

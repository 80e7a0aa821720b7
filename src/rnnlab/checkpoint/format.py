"""The checkpoint format: what rnnlab stores in a Lightning checkpoint, how it is written
atomically and how it is read safely.

Besides Lightning's own entries a checkpoint holds the resolved run config (``CONFIG_KEY``), the
DataModule's fitted state (``DATA_KEY``: normaliser statistics, class list) and the metrics of the
epoch it was saved after (``METRICS_KEY``), all plain types and tensors, so every checkpoint loads
with ``torch.load(..., weights_only=True)``. Loading one never runs code: see ``restore``.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import DataError, first_line
from rnnlab.utils.files import as_floats, atomic_path

log = logging.getLogger(__name__)

CONFIG_KEY = "rnnlab_config"
METRICS_KEY = "rnnlab_epoch_metrics"
DATA_KEY = "rnnlab_data_state"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by rnnlab without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/best.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        # torch's own text for this case advises weights_only=False, which we must not echo
        reason = "" if "weights_only" in str(exc) else f" ({first_line(exc)})"
        raise DataError(
            f"cannot load checkpoint {path} safely{reason}; it is truncated, "
            "corrupted, or holds objects other than tensors and plain types"
        ) from exc
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise DataError(f"{path} is not an rnnlab checkpoint (no stored run config)")
    return checkpoint


def save_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` so that ``path`` is never seen half written."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through ``atomic_path``: a crash mid-write never leaves a
    torn ``last.ckpt`` (a resumed run sees the old file or the new one)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class StoreRunState(L.Callback):
    """Puts what rnnlab adds to a checkpoint into every one the trainer writes: the resolved run
    config and the DataModule's fitted state, as plain types (eval and predict rebuild data and
    model from the checkpoint alone, and ``weights_only`` loading works), and the metrics of the
    epoch just finished (resuming a finished run reports what the run reported)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[METRICS_KEY] = as_floats(trainer.callback_metrics)
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            checkpoint[DATA_KEY] = datamodule.state_dict()


def epoch_metrics(checkpoint: dict[str, Any]) -> dict[str, float]:
    """The metrics of the epoch the checkpoint was saved after."""
    return as_floats(checkpoint.get(METRICS_KEY, {}))

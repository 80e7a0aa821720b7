"""The checkpoint format: what rnnlab stores in a Lightning checkpoint, how it is written
atomically and how it is read safely.

Besides Lightning's own entries a checkpoint holds the resolved run config (``CONFIG_KEY``), the
DataModule's fitted state (``DATA_KEY``: normaliser statistics, class list), the metrics of the
epoch it was saved after (``METRICS_KEY``) and its format's version (``FORMAT_KEY``), all plain
types and tensors, so every checkpoint loads with ``torch.load(..., weights_only=True)``. Loading
one never runs code: see ``restore``.

Format 1 (rnnlab 0.1.0) had no version and held the data state twice: under ``DATA_KEY`` and
where Lightning puts it, under the DataModule's class name. Format 2 holds it under ``DATA_KEY``
only, a key that does not change when a class is renamed or moved; both formats load.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import DataError, UserError, first_line
from rnnlab.utils.files import as_floats, atomic_path

log = logging.getLogger(__name__)

CONFIG_KEY = "rnnlab_config"
METRICS_KEY = "rnnlab_epoch_metrics"
DATA_KEY = "rnnlab_data_state"
FORMAT_KEY = "rnnlab_format"
FORMAT = 2  # the format this release writes; it reads every format up to this one


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by rnnlab without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/best.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # Whatever the bytes make the unpickler or torch's rebuilding of tensors raise (an
        # UnpicklingError, a UnicodeDecodeError from changed bytes, a TypeError from a tensor
        # rebuilt with other arguments, ...) the file is not a checkpoint this can read.
        # torch's own text for a refused object advises weights_only=False: never echoed.
        reason = "" if "weights_only" in str(exc) else f" ({type(exc).__name__}: {first_line(exc)})"
        raise DataError(
            f"cannot load checkpoint {path} safely{reason}; it is truncated, "
            "corrupted, or holds objects other than tensors and plain types"
        ) from exc
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise DataError(f"{path} is not an rnnlab checkpoint (no stored run config)")
    version = checkpoint.get(FORMAT_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT:
        raise DataError(
            f"checkpoint {path} is in format {version!r}; this rnnlab reads formats 1 to "
            f"{FORMAT}: load it with the rnnlab release that wrote it, or a newer one"
        )
    return checkpoint


def stored_data_state(checkpoint: dict[str, Any], datamodule: Any) -> Any:
    """The DataModule's fitted state: under ``DATA_KEY``, or in a format-1 checkpoint that
    lacks it, under the class's name (where Lightning stores it)."""
    return checkpoint.get(DATA_KEY, checkpoint.get(type(datamodule).__qualname__))


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
    model from the checkpoint alone, and ``weights_only`` loading works), the metrics of the
    epoch just finished (resuming a finished run reports what the run reported) and the format.
    The data state is stored once, under ``DATA_KEY``; a resumed or tested run gets it back from
    there, as Lightning would give back its own copy."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[METRICS_KEY] = as_floats(trainer.callback_metrics)
        checkpoint[FORMAT_KEY] = FORMAT
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            checkpoint[DATA_KEY] = datamodule.state_dict()
            # Lightning's copy of the same state, under the class's name
            checkpoint.pop(type(datamodule).__qualname__, None)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        # a format-1 checkpoint's own copy under the class's name was loaded by Lightning
        if datamodule is not None and type(datamodule).__qualname__ not in checkpoint:
            state = checkpoint.get(DATA_KEY)
            if state is not None:
                try:
                    datamodule.load_state_dict(state)
                except UserError:
                    raise
                except Exception as exc:  # checked before the resume (plan_resume): a net
                    raise DataError(
                        f"the resumed checkpoint's data state is not what rnnlab wrote "
                        f"({type(exc).__name__}: {first_line(exc)})"
                    ) from exc


def epoch_metrics(checkpoint: dict[str, Any]) -> dict[str, float]:
    """The metrics of the epoch the checkpoint was saved after."""
    return as_floats(checkpoint.get(METRICS_KEY, {}))

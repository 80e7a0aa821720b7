"""Evaluation entry point: ``python -m rnnlab.eval ckpt_path=...`` re-tests a checkpoint.

The data and model are rebuilt from the config stored inside the checkpoint and the normaliser
statistics saved with it, so no training override has to be repeated and nothing is refitted.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.callbacks.run_state import CONFIG_KEY
from rnnlab.train import write_metrics
from rnnlab.utils.cli import run_task
from rnnlab.utils.config import config_dir, instantiate_group
from rnnlab.utils.errors import DataError, first_line
from rnnlab.utils.preflight import preflight


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


# What a stored config may build. A checkpoint is data: its config must not be able to name
# an arbitrary callable (``_target_: os.system``) for ``instantiate`` to run.
SAFE_TARGETS = ("rnnlab.", "torch.optim.", "torch.nn.")


def check_targets(node: Any, where: str) -> None:
    """Refuse a stored config whose ``_target_`` lies outside ``SAFE_TARGETS``."""
    container = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    stack = [(where, container)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            target = value.get("_target_")
            if target is not None and not str(target).startswith(SAFE_TARGETS):
                raise DataError(
                    f"checkpoint config {path}._target_ is {target!r}, outside what rnnlab builds "
                    f"({', '.join(SAFE_TARGETS)}); refusing to instantiate it"
                )
            stack += [(f"{path}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]


def restore(
    checkpoint: dict[str, Any],
) -> tuple[DictConfig, L.LightningDataModule, L.LightningModule]:
    """Rebuild the run config, DataModule (with its saved state) and model (with its weights)."""
    run_cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    check_targets(run_cfg.data, "data")
    check_targets(run_cfg.model, "model")
    datamodule = instantiate(run_cfg.data)
    datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    model = instantiate(run_cfg.model)
    model.load_state_dict(checkpoint["state_dict"])
    return run_cfg, datamodule, model


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint at ``cfg.ckpt_path`` on its data set's test split."""
    run_cfg, datamodule, model = restore(load_checkpoint(cfg.ckpt_path))
    L.seed_everything(run_cfg.seed, workers=True, verbose=False)
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False)
    trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        write_metrics(metrics, cfg.paths.output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


def main() -> None:
    """The command: check the command line, then let Hydra run the job(s)."""
    preflight("eval")
    hydra_main()


if __name__ == "__main__":
    main()

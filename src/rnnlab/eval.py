"""Evaluation entry point: ``python -m rnnlab.eval ckpt_path=...`` re-tests a checkpoint.

The data and model are rebuilt from the config stored inside the checkpoint and the normaliser
statistics saved with it, so no training override has to be repeated and nothing is refitted.
"""

from __future__ import annotations

from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.checkpoint import CONFIG_KEY, load_checkpoint
from rnnlab.train import write_metrics
from rnnlab.utils.cli import run_task
from rnnlab.utils.config import config_dir, instantiate_group
from rnnlab.utils.errors import DataError
from rnnlab.utils.preflight import preflight

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

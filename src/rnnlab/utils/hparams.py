"""TensorBoard's HParams tab: each run's hyperparameters against its final metrics."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

SECTIONS = ("model", "data", "trainer")


def flat_hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """Scalar settings of the model, data and trainer as ``section.key`` (lists as text), plus the
    seed; Hydra's ``_target_``/``_partial_`` plumbing and unset values left out."""
    flat: dict[str, Any] = {"seed": cfg.get("seed")}
    for section in SECTIONS:
        node = OmegaConf.to_container(cfg.get(section) or {}, resolve=True)
        stack: list[tuple[str, Any]] = [(section, node)]
        while stack:
            prefix, value = stack.pop()
            if isinstance(value, dict):
                stack += [(f"{prefix}.{k}", v) for k, v in value.items() if not k.startswith("_")]
            elif isinstance(value, list | tuple):
                flat[prefix] = str(list(value))
            elif isinstance(value, bool | int | float | str):
                flat[prefix] = value
    return {k: flat[k] for k in sorted(flat) if flat[k] is not None}


def log_hparams(loggers: list[Any], cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Write the HParams summary to every TensorBoard logger. Its metric columns are the run's
    test metrics and the objective; the objective is added as a scalar, as no step logged it."""
    objective = f"{cfg.monitor}_best"
    shown = {k: v for k, v in metrics.items() if k.startswith("test/") or k == objective}
    params = flat_hyperparameters(cfg)
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        writer = logger.experiment
        if objective in shown:
            writer.add_scalar(objective, shown[objective])
        for summary in hparams(params, shown):
            writer.file_writer.add_summary(summary)
        writer.flush()

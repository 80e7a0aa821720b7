"""TensorBoard's HParams tab: each run's hyperparameters against its final metrics."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
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


def command_line_keys() -> set[str]:
    """The settings given on the command line of this Hydra job (in a sweep: the swept ones,
    with this job's values, and any fixed overrides); empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    overrides = HydraConfig.get().overrides.task
    return {str(o).split("=", 1)[0].lstrip("+~") for o in overrides if "=" in str(o)}


def _mark_first(experiment: Summary, names: set[str]) -> None:
    """Flag ``names`` as the hparams that differ between runs. The HParams tab shows five
    hparam columns at first, those flagged before the rest; without a flag it shows the first
    five by name (data.*), never what a sweep varied. A run cannot see the sweep's other jobs,
    so it flags what its own command line set: in a sweep, the swept settings."""
    value = experiment.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in names
    value.metadata.plugin_data.content = data.SerializeToString()


def log_hparams(
    loggers: list[Any], cfg: DictConfig, metrics: dict[str, float], chosen: Collection[str] = ()
) -> None:
    """Write the HParams summary to every TensorBoard logger. Its metric columns are the
    objective, then the run's test metrics; the objective is added as a scalar, as no step logged
    it. ``chosen`` hparams (the settings given on the command line) come first in the table."""
    objective = f"{cfg.monitor}_best"
    tests = sorted(k for k in metrics if k.startswith("test/"))
    shown = {k: metrics[k] for k in [objective, *tests] if k in metrics}
    params = flat_hyperparameters(cfg)
    experiment, start, end = hparams(params, shown)
    _mark_first(experiment, set(chosen))
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        writer = logger.experiment
        if objective in shown:
            writer.add_scalar(objective, shown[objective])
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        writer.flush()

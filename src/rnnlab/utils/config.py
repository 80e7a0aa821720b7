"""Where the Hydra configs live, and instantiation of config groups that hold several objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.slurm import gpus_per_node

# `monitor_mode` (min/max) as the Optuna sweeper spells it, so the objective's direction is
# named once too.
OmegaConf.register_new_resolver(
    "optuna_direction", lambda mode: {"min": "minimize", "max": "maximize"}[mode], replace=True
)


# hydra/launcher=slurm asks SLURM for GPUs only for a GPU trainer
OmegaConf.register_new_resolver("slurm_gpus_per_node", gpus_per_node, replace=True)


def config_dir() -> str:
    """Absolute path of the Hydra config directory.

    An installed wheel carries the configs as ``rnnlab/conf``; a checkout (editable install or
    plain ``src`` on the path) keeps them at the top level, two folders above this package.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"no Hydra configs beside {package}; reinstall rnnlab")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` in a group such as ``callbacks`` or ``logger``;
    entries set to null are how a user switches one off."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]

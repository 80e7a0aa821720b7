"""The optimiser/scheduler pair every LightningModule here returns from configure_optimizers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def build_optimizers(
    params: Iterable[torch.nn.Parameter],
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., Any] | None,
    monitor: str,
) -> Any:
    """Complete the Hydra partials; a scheduler is stepped per epoch on the monitored metric
    (ReduceLROnPlateau reads it; other schedulers ignore it)."""
    opt = optimizer(params=params)
    if scheduler is None:
        return opt
    return {
        "optimizer": opt,
        "lr_scheduler": {
            "scheduler": scheduler(optimizer=opt),
            "monitor": monitor,
            "interval": "epoch",
        },
    }

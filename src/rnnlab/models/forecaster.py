"""LightningModule for direct multi-step forecasting: the regressor with forecasting's defaults
(every horizon step at once, relative to the last observed value, scored beside the naive and
seasonal-naive forecasts of the same windows, with MASE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.regressor import SequenceRegressor


class Forecaster(SequenceRegressor):
    """``SequenceRegressor`` for windows of ``ForecastDataModule``; see its docstring."""

    def __init__(
        self,
        encoder: RNNEncoder,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        horizon: int = 1,
        num_targets: int = 1,
        target_names: list[str] | None = None,
        loss: str = "mse",
        head_dropout: float = 0.0,
        relative: bool = True,
        metrics: list[str] | tuple[str, ...] = ("mae", "rmse", "mape", "smape", "mase"),
        baselines: list[str] | tuple[str, ...] = ("naive", "seasonal_naive"),
        monitor: str = "val/loss",
    ) -> None:
        super().__init__(
            encoder,
            optimizer,
            scheduler,
            horizon=horizon,
            num_targets=num_targets,
            target_names=target_names,
            loss=loss,
            head_dropout=head_dropout,
            relative=relative,
            metrics=metrics,
            baselines=baselines,
            monitor=monitor,
        )

"""LightningModule for direct multi-step forecasting: the regressor with forecasting's defaults
(every horizon step at once, relative to the last observed value, scored beside the naive and
seasonal-naive forecasts of the same windows, with MASE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rnnlab.models.encoder import SequenceEncoder
from rnnlab.models.regressor import SequenceRegressor


class Forecaster(SequenceRegressor):
    """``SequenceRegressor`` for windows of ``ForecastDataModule`` with forecasting's defaults;
    every other setting is the regressor's (see its docstring)."""

    def __init__(
        self,
        encoder: SequenceEncoder,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        *,
        relative: bool = True,
        metrics: list[str] | tuple[str, ...] = ("mae", "rmse", "mape", "smape", "mase"),
        baselines: list[str] | tuple[str, ...] = ("naive", "seasonal_naive"),
        **settings: Any,
    ) -> None:
        super().__init__(
            encoder,
            optimizer,
            scheduler,
            relative=relative,
            metrics=metrics,
            baselines=baselines,
            **settings,
        )

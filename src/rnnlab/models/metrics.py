"""Metrics for real-valued outputs, all computed in the data's original units."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection
from torchmetrics.regression import (
    MeanAbsolutePercentageError,
    SymmetricMeanAbsolutePercentageError,
)

from rnnlab.utils.errors import ConfigError


class MeanAbsoluteScaledError(Metric):
    """MASE: absolute errors divided by each series' in-sample seasonal-naive MAE (``scale``, from
    the training part), averaged over every forecast step of every window. A series whose scale
    is undefined (NaN: a constant training target) is left out; none left gives NaN."""

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> None:
        defined = ~torch.isnan(scale)
        self.total += ((preds - target).abs() / scale)[defined].sum().double()
        self.count += defined.sum()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


METRICS: dict[str, Callable[..., Metric]] = {
    "mae": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "rmse": lambda: MeanSquaredError(squared=False),
    "mape": MeanAbsolutePercentageError,  # a fraction, not percent
    "smape": SymmetricMeanAbsolutePercentageError,  # 2|e| / (|y| + |ŷ|), a fraction
    "mase": MeanAbsoluteScaledError,
}


# metrics that need a per-series scale from the data (TaskDataModule.scaled_metrics)
DATA_SCALED = {"mase"}


def regression_metrics(names: list[str], prefix: str, postfix: str = "") -> MetricCollection:
    """A collection named ``<prefix><metric><postfix>``, e.g. ``test/mae_seasonal_naive``."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric {unknown[0]!r}; set model.metrics from {', '.join(METRICS)}"
        )
    # compute_groups=False: MASE must never share state with MAE, whose states look alike.
    return MetricCollection(
        {n: METRICS[n]() for n in names}, prefix=prefix, postfix=postfix, compute_groups=False
    )

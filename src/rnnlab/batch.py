"""The one batch type of every task: what DataModules produce and LightningModules read (so
neither package imports the other).

A batch is a small core every task fills (``x``, ``lengths``, ``y``; ``index`` and ``baselines``
where the task has them) plus typed extras that only some tasks carry: ``TargetScaling`` for
real-valued targets, ``ForecastExtras`` for forecasting windows. A model reads an extra it needs
through the batch's accessor (``targets()``, ``target_scaling()``), which refuses a batch
without it in one line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

# Character batches (language models): id 0 is the unknown character, and targets past the end
# of a text are padding that no loss or metric counts.
UNKNOWN_ID = 0
IGNORE_TARGET = -1


def _moved(value: Any, device: torch.device) -> Any:
    """``value`` (a tensor, a dict of them, an extras dataclass or None) on ``device``."""
    if value is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    fields = dataclasses.fields(value)
    return dataclasses.replace(
        value, **{f.name: _moved(getattr(value, f.name), device) for f in fields}
    )


@dataclass
class TargetScaling:
    """How real targets were normalised, per row and target (batch, targets): the loss is taken
    on the normalised scale, metrics in original units."""

    shift: torch.Tensor
    scale: torch.Tensor

    def normalise(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` (batch, horizon, targets) in original units, normalised."""
        return (value - self.shift[:, None]) / self.scale[:, None]

    def denormalise(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` (batch, horizon, targets) normalised, in original units."""
        return value * self.scale[:, None] + self.shift[:, None]


@dataclass
class ForecastExtras:
    """What a forecasting window with targets adds: MASE's denominator ``mase_scale`` (batch,
    targets), from each series' training part, and ``history`` (batch, lookback, targets), the
    raw target inputs, for figures. ``residual_quantiles`` (horizon, targets, levels), where the
    data gives them, are quantiles of the seasonal-naive forecast's errors on the training part
    in units of ``mase_scale``, at ``RESIDUAL_LEVELS``: that baseline's forecast intervals."""

    mase_scale: torch.Tensor
    history: torch.Tensor
    residual_quantiles: torch.Tensor | None = None


RESIDUAL_LEVELS = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000


@dataclass
class Batch:
    """A batch of any task.

    Core: ``x`` is padded (batch, time, features); ``lengths`` (batch,) int64 stays on the CPU,
    where packing reads it. ``y`` is absent for predictions; otherwise class indices (batch,) or
    (batch, time), or real targets (batch, horizon, targets) in original units. ``index`` is each
    sample's position in its dataset (figures pick windows by it); ``baselines`` are other
    predictions of ``y`` that get the same metrics (naive forecasts, a training mean, n-gram
    log-likelihoods), by name.

    Extras: ``scaling`` (``TargetScaling``) on batches of real targets; ``forecast``
    (``ForecastExtras``) on forecasting windows with targets.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    y: torch.Tensor | None = None
    index: torch.Tensor | None = None
    baselines: dict[str, torch.Tensor] = field(default_factory=dict)
    scaling: TargetScaling | None = None
    forecast: ForecastExtras | None = None
    # the last input steps that lie at forecast times (inputs known in advance; 0: none)
    future_rows: int = 0

    def __len__(self) -> int:
        return len(self.x)

    def targets(self) -> torch.Tensor:
        """``y``, which every loss and metric reads; a prediction batch has none."""
        if self.y is None:
            raise ValueError("this batch has no targets (y): it is a prediction batch")
        return self.y

    def target_scaling(self) -> TargetScaling:
        """``scaling``, which a model of real targets reads; its data's collate must set it."""
        if self.scaling is None:
            raise ValueError(
                "this batch has no target scaling (Batch.scaling): a model of real targets "
                "needs data whose collate sets it"
            )
        return self.scaling

    def to(self, device: torch.device) -> Batch:
        """This batch on ``device``, except ``lengths``: a device copy would cost a synchronising
        transfer back to the CPU in every forward."""
        changes: dict[str, Any] = {
            f.name: _moved(getattr(self, f.name), device)
            for f in dataclasses.fields(self)
            if f.name not in ("lengths", "future_rows")
        }
        return dataclasses.replace(self, **changes)

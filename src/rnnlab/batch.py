"""The one batch type of every task: what DataModules produce and LightningModules read (so
neither package imports the other)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

# Character batches (language models): id 0 is the unknown character, and targets past the end
# of a text are padding that no loss or metric counts.
UNKNOWN_ID = 0
IGNORE_TARGET = -1


@dataclass
class Batch:
    """A batch of any task.

    ``x`` is padded (batch, time, features); ``lengths`` (batch,) int64 stays on the CPU, where
    packing reads it. ``y`` is absent for predictions; otherwise class indices (batch,) or real
    targets (batch, horizon, targets) in original units, with ``target_shift``/``target_scale``
    (batch, targets) the normalisation the loss is taken in. ``baselines`` are other forecasts of
    ``y`` in original units (naive, seasonal naive, training mean) that get the same metrics;
    ``mase_scale`` (batch, targets) is MASE's denominator; ``history`` (batch, lookback, targets)
    the raw target inputs and ``index`` each sample's position in its dataset, for figures.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    y: torch.Tensor | None = None
    target_shift: torch.Tensor | None = None
    target_scale: torch.Tensor | None = None
    baselines: dict[str, torch.Tensor] = field(default_factory=dict)
    mase_scale: torch.Tensor | None = None
    history: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device) -> Batch:
        """This batch on ``device``, except ``lengths``: a device copy would cost a synchronising
        transfer back to the CPU in every forward."""
        moved: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "lengths" or value is None:
                moved[item.name] = value
            elif isinstance(value, dict):
                moved[item.name] = {k: v.to(device) for k, v in value.items()}
            else:
                moved[item.name] = value.to(device)
        return Batch(**moved)

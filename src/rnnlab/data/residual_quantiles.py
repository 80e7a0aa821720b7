"""The seasonal-naive baseline's forecast intervals: empirical quantiles of its errors on the
training windows, per horizon step and target, in units of each series' MASE scale (so series of
different sizes pool), at ``rnnlab.batch.RESIDUAL_LEVELS``. A test window's interval is its
seasonal-naive forecast plus these quantiles times its series' scale."""

from __future__ import annotations

import math

import numpy as np
import torch

from rnnlab.batch import RESIDUAL_LEVELS
from rnnlab.data.windows import WindowSpec

# errors pooled at most: a seeded share of each series' training windows above it
MAX_WINDOWS = 200_000


def residual_quantiles(
    train_parts: list[torch.Tensor], scales: list[torch.Tensor], spec: WindowSpec, seed: int = 0
) -> torch.Tensor:
    """Quantiles (horizon, targets, levels) of the seasonal-naive errors of every training
    window (origin step 1) of ``train_parts`` (each series' train part, time x columns), each
    divided by its series' ``scales`` (MASE's, per target; a series with an undefined scale is
    left out). Zeros where no error is left."""
    lookback, horizon, targets = spec.lookback, spec.horizon, spec.num_targets
    steps = np.arange(horizon)
    # the seasonal-naive forecast of step h from origin t reads t + h - season * (h // season + 1)
    back = steps - spec.season_length * (steps // spec.season_length + 1)
    counts = [max(0, len(part) - lookback - horizon + 1) for part in train_parts]
    share = min(1.0, MAX_WINDOWS / max(1, sum(counts)))
    rng = np.random.default_rng(seed)
    errors = []
    for part, scale, count in zip(train_parts, scales, counts, strict=True):
        defined = ~torch.isnan(scale)
        if count == 0 or not bool(defined.all()):
            continue
        origins = np.arange(lookback, lookback + count)
        if share < 1:
            keep = max(1, math.ceil(count * share))
            origins = np.sort(rng.choice(origins, size=keep, replace=False))
        values = part[:, :targets].double().numpy()
        actual = values[origins[:, None] + steps]
        forecast = values[origins[:, None] + back]
        errors.append((actual - forecast) / scale.double().numpy())
    if not errors:
        return torch.zeros(horizon, targets, len(RESIDUAL_LEVELS))
    pooled = np.concatenate(errors)  # (windows, horizon, targets)
    found = np.quantile(pooled, RESIDUAL_LEVELS.numpy(), axis=0)  # (levels, horizon, targets)
    return torch.from_numpy(np.moveaxis(found, 0, -1)).float()

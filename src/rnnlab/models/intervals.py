"""Scores of probabilistic forecasts, in the data's original units: the pinball (quantile) loss,
the continuous ranked probability score (CRPS) in closed form or from quantiles or samples, and
``IntervalMetrics``, which averages them with the central intervals' coverage and width.

The CRPS of a predictive CDF F at an actual y is the integral of (F(x) - 1{y <= x})² over x, in
the target's units (lower is better; for a point forecast it is the absolute error). It equals
twice the pinball loss integrated over all levels, so a grid of quantiles estimates it
(``crps_from_grid``). Peers' sampled forecasts are scored with ``crps_from_samples``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics import Metric

# central intervals scored by coverage (the share of actuals inside) and the 80 % one's width
COVERAGE = {"coverage_80": (0.1, 0.9), "coverage_95": (0.025, 0.975)}
WIDTH = {"interval_width_80": (0.1, 0.9)}
# the levels those intervals need
INTERVAL_ENDS = tuple(sorted({q for pair in (*COVERAGE.values(), *WIDTH.values()) for q in pair}))
GRID_SIZE = 100  # quantile levels (midpoints of equal steps) of the grid estimate of the CRPS


def pinball(quantile: torch.Tensor, actual: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The pinball loss of ``quantile`` at ``level`` for ``actual`` (broadcast): level × the
    shortfall when the actual is above, (1 - level) × the excess when below."""
    error = actual - quantile
    return torch.maximum(level * error, (level - 1) * error)


def crps_normal(loc: torch.Tensor, scale: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """The CRPS of a normal(loc, scale) at ``actual`` (Gneiting & Raftery 2007, eq. 21)."""
    z = (actual - loc) / scale
    normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    density, cdf = normal.log_prob(z).exp(), normal.cdf(z)
    return scale * (z * (2 * cdf - 1) + 2 * density - 1 / math.sqrt(math.pi))


def crps_student_t(
    loc: torch.Tensor, scale: torch.Tensor, df: torch.Tensor, actual: torch.Tensor
) -> torch.Tensor:
    """The CRPS of a Student-t (df > 1) at ``actual``, in closed form (as in scoringRules'
    ``crps_t``), in float64 through scipy."""
    from scipy import special, stats

    def numpy(value: torch.Tensor) -> np.ndarray:
        return value.detach().double().cpu().numpy()

    nu, z = numpy(df), numpy((actual - loc) / scale)
    tail = 2 * np.sqrt(nu) * np.exp(special.betaln(0.5, nu - 0.5) - 2 * special.betaln(0.5, nu / 2))
    value = (
        z * (2 * stats.t.cdf(z, nu) - 1)
        + 2 * stats.t.pdf(z, nu) * (nu + z**2) / (nu - 1)
        - tail / (nu - 1)
    )
    return scale * torch.as_tensor(np.asarray(value), device=actual.device, dtype=actual.dtype)


def at_levels(values: torch.Tensor, known: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """Quantiles (..., len(wanted)) read from ``values`` (..., len(known)) given at the sorted
    levels ``known``: linear between two known levels, the nearest one's beyond them."""
    if len(known) == 1:
        return values[..., [0] * len(wanted)]
    upper = torch.searchsorted(known, wanted).clamp(1, len(known) - 1)
    lower = upper - 1
    weight = ((wanted - known[lower]) / (known[upper] - known[lower])).clamp(0, 1)
    return values[..., lower] * (1 - weight) + values[..., upper] * weight


def crps_grid() -> torch.Tensor:
    """The levels of the grid estimate: midpoints of ``GRID_SIZE`` equal steps of (0, 1)."""
    return (torch.arange(GRID_SIZE, dtype=torch.float64) + 0.5) / GRID_SIZE


def crps_from_grid(quantiles: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """The CRPS estimated from ``quantiles`` (..., GRID_SIZE) at ``crps_grid()``'s levels: twice
    the mean pinball loss (within about 1 % of the exact value for a normal)."""
    levels = crps_grid().to(device=quantiles.device, dtype=quantiles.dtype)
    return 2 * pinball(quantiles, actual[..., None], levels).mean(dim=-1)


def crps_from_samples(samples: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """The CRPS of the empirical distribution of ``samples`` (..., n) at ``actual``:
    E|X - y| - E|X - X'| / 2, the second term over distinct pairs (the unbiased 'fair' form),
    from sorted samples in O(n log n)."""
    n = samples.shape[-1]
    ordered = samples.sort(dim=-1).values
    first = (ordered - actual[..., None]).abs().mean(dim=-1)
    # sum over pairs i < j of (x_j - x_i) = sum_i x_(i) (2i - n + 1) with 0-based ranks
    weights = 2 * torch.arange(n, dtype=samples.dtype, device=samples.device) - n + 1
    pairs = (ordered * weights).sum(dim=-1) / (n * (n - 1))
    return first - pairs


class IntervalMetrics(Metric):
    """Means over every scored value of ``keys`` (any of ``crps``, ``pinball``, ``coverage_80``,
    ``coverage_95``, ``interval_width_80``), logged as ``<key><postfix>``."""

    full_state_update = False
    higher_is_better = False
    count: torch.Tensor

    def __init__(self, keys: list[str], postfix: str = "") -> None:
        super().__init__()
        self.keys, self.postfix = list(keys), postfix
        for key in self.keys:
            self.add_state(
                key, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, values: dict[str, torch.Tensor]) -> None:
        """``values`` holds, for each key, one number per scored value (the same shape for all)."""
        for key in self.keys:
            setattr(self, key, getattr(self, key) + values[key].double().sum())
        self.count += values[self.keys[0]].numel()

    def compute(self) -> dict[str, torch.Tensor]:
        return {f"{k}{self.postfix}": (getattr(self, k) / self.count).float() for k in self.keys}


def interval_values(
    quantile_at: dict[float, torch.Tensor],
    crps: torch.Tensor,
    actual: torch.Tensor,
    pinball_levels: tuple[float, ...],
) -> dict[str, torch.Tensor]:
    """Per-value scores from the quantiles a forecast gives (``quantile_at``: level -> values in
    original units, shaped like ``actual``) and its CRPS: the pinball loss averaged over
    ``pinball_levels``, and each coverage and width whose two levels are given."""
    values = {"crps": crps}
    values["pinball"] = torch.stack(
        [pinball(quantile_at[q], actual, torch.tensor(q)) for q in pinball_levels]
    ).mean(dim=0)
    for key, (low, high) in COVERAGE.items():
        if low in quantile_at and high in quantile_at:
            inside = (quantile_at[low] <= actual) & (actual <= quantile_at[high])
            values[key] = inside.to(actual.dtype)
    for key, (low, high) in WIDTH.items():
        if low in quantile_at and high in quantile_at:
            values[key] = quantile_at[high] - quantile_at[low]
    return values

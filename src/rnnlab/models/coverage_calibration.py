"""Coverage calibration of a quantile forecaster (``model.calibration=coverage``).

``model.calibration=spread`` fits one factor to the CRPS; it trades the tails for the centre, so
a forecast whose middle is too wide and whose tails are right comes out with tails too narrow.
This calibration fits each central interval to its own nominal coverage instead, by split
conformal prediction with a scaled score (as in conformalised quantile regression, Romano et al.
2019, with the interval's half-widths as the scale): for a trained pair of levels ``(q, 1 - q)``
about the median ``m``, an actual ``y`` scores ``max((m - y) / (m - lower), (y - m) / (upper -
m))``, the factor by which the interval would have to stretch about the median to hold it. The
pair's factor is the ``ceil((n + 1)(1 - 2q))``-th smallest of the ``n`` validation scores, so the
stretched interval holds at least its nominal share of the validation actuals. Factors never
shrink outwards (an outer pair's is at least an inner pair's), so stretched quantiles stay in
order; the median, and so the point forecast, stays where it is.

The factors are fitted on every validation value at each validation epoch and kept in the
module's ``level_factors`` buffer (one per trained level, 1 at the median), so a checkpoint
holds the factors of its epoch. The ``val/<metric>_calibrated`` metrics are cross-fitted, as
spread calibration's are: the windows split in two by parity, each half scored with the factors
fitted on the other. Unlike spread calibration's running sums, the fit needs every validation
value at once, so this metric keeps the validation quantiles and actuals until the epoch's end
(5 levels of a float64 per target value: 80 bytes per validation value).
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from rnnlab.batch import TargetScaling
from rnnlab.models.intervals import COVERAGE
from rnnlab.models.predictive import Quantiles
from rnnlab.utils.errors import ConfigError

MIN_FACTOR = 0.01  # an interval that held every actual at its median would collapse to a point


def central_pairs(levels: tuple[float, ...]) -> list[tuple[int, int]]:
    """The indices of ``levels`` as central pairs ``(q, 1 - q)``, innermost first; refused
    unless the levels are the median and such pairs."""
    middle = len(levels) // 2
    symmetric = len(levels) % 2 == 1 and math.isclose(levels[middle], 0.5, abs_tol=1e-9)
    symmetric = symmetric and all(
        math.isclose(levels[i], 1 - levels[-1 - i], abs_tol=1e-9) for i in range(middle)
    )
    if not symmetric or middle == 0:
        raise ConfigError(
            f"model.calibration=coverage fits central intervals, and model.quantiles="
            f"{list(levels)} are not the median and pairs about it; use levels such as "
            "[0.025,0.1,0.5,0.9,0.975], or model.calibration=spread"
        )
    return [(middle - k, middle + k) for k in range(1, middle + 1)]


def scores(quantiles: torch.Tensor, actual: torch.Tensor, pair: tuple[int, int]) -> torch.Tensor:
    """Each actual's stretch factor for the central interval ``pair`` of ``quantiles``
    (..., levels; the median in the middle): it lies inside the interval stretched by a factor
    exactly when its score is at most that factor."""
    middle = quantiles.shape[-1] // 2
    median = quantiles[..., middle]
    below = (median - quantiles[..., pair[0]]).clamp_min(torch.finfo(quantiles.dtype).tiny)
    above = (quantiles[..., pair[1]] - median).clamp_min(torch.finfo(quantiles.dtype).tiny)
    return torch.maximum((median - actual) / below, (actual - median) / above)


def fit_factors(
    quantiles: torch.Tensor, actual: torch.Tensor, levels: tuple[float, ...]
) -> torch.Tensor:
    """The factor of each level (1 at the median) fitted on ``quantiles`` (..., levels) of
    ``actual``: each pair's conformal quantile of its scores, never smaller than an inner
    pair's."""
    factors = torch.ones(len(levels), dtype=torch.float64)
    floor = MIN_FACTOR
    for low, high in central_pairs(levels):
        found = scores(quantiles, actual, (low, high)).flatten()
        n = found.numel()
        rank = min(n, math.ceil((n + 1) * (levels[high] - levels[low])))
        factor = max(floor, torch.kthvalue(found.double().cpu(), rank).values.item())
        factors[low] = factors[high] = floor = factor
    return factors


class CoverageFit(Metric):
    """Keeps the validation quantiles (original units) and actuals of an epoch, each window's
    fold (its parity), and fits the factors at ``compute``; gathered across DDP processes, so
    every process fits the same factors."""

    full_state_update = False
    higher_is_better = False
    # lists of a batch each; after a DDP sync, or dim_zero_cat, one tensor
    quantiles: list[torch.Tensor]  # (windows, horizon, targets, levels), original units
    actual: list[torch.Tensor]  # (windows, horizon, targets)
    fold: list[torch.Tensor]  # (windows): 0 or 1

    def __init__(self, output: Quantiles) -> None:
        super().__init__()
        self.output = output
        central_pairs(output.levels)  # refuse levels without central pairs before training
        self.add_state("quantiles", default=[], dist_reduce_fx="cat")
        self.add_state("actual", default=[], dist_reduce_fx="cat")
        self.add_state("fold", default=[], dist_reduce_fx="cat")
        self.windows_seen = 0  # the next window's index in this process: its fold is its parity

    def update(self, values: torch.Tensor, scaling: TargetScaling, actual: torch.Tensor) -> None:
        """Add a batch: the output's ``values`` and the ``actual`` targets (batch, horizon,
        targets; original units)."""
        dtype = torch.float32 if actual.device.type == "mps" else torch.float64
        rows = actual.shape[0]
        found = self.output.quantiles(values, scaling, self.output.levels).to(dtype)
        self.quantiles.append(found)
        self.actual.append(actual.to(dtype))
        fold = (torch.arange(rows, device=actual.device) + self.windows_seen) % 2
        self.fold.append(fold)
        self.windows_seen += rows

    def compute(self) -> dict[str, torch.Tensor]:
        """``level_factors`` fitted on every window (1s when there were none), each central
        pair's factor as ``calibration_factor_<nominal %>``, and the cross-fitted
        ``crps_calibrated`` and ``coverage_<level>_calibrated`` (NaN unless both folds have
        windows)."""
        levels = self.output.levels
        if len(self.fold) == 0:  # a list of batches, or after a DDP sync one tensor
            return {"level_factors": torch.ones(len(levels), dtype=torch.float64)}
        quantiles, actual = dim_zero_cat(self.quantiles), dim_zero_cat(self.actual)
        fold = dim_zero_cat(self.fold).to(quantiles.device)
        factors = fit_factors(quantiles, actual, levels)
        found = {"level_factors": factors}
        for low, high in central_pairs(levels):
            nominal = f"{100 * (levels[high] - levels[low]):g}"
            found[f"calibration_factor_{nominal}"] = factors[high]
        keys = ["crps_calibrated", *(f"{key}_calibrated" for key in COVERAGE)]
        halves = [fold == k for k in (0, 1)]
        if not all(bool(half.any()) for half in halves):
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {**found, **dict.fromkeys(keys, nan)}
        sums = torch.zeros(len(keys), dtype=torch.float64)
        for fitted, scored in (halves, halves[::-1]):
            fitted_factors = fit_factors(quantiles[fitted], actual[fitted], levels)
            sums += self._scored(quantiles[scored], actual[scored], fitted_factors)
        return {**found, **dict(zip(keys, sums / actual.numel(), strict=True))}

    def _scored(
        self, quantiles: torch.Tensor, actual: torch.Tensor, factors: torch.Tensor
    ) -> torch.Tensor:
        """Sums of the CRPS and of the actuals inside each ``COVERAGE`` interval of the
        stretched ``quantiles`` (original units), scored by the output itself, as the test
        metrics score it (with an identity scaling: the quantiles are already in original
        units)."""
        wide = self.output.widen(quantiles, factors.to(quantiles))
        first = actual[:, 0]  # (windows, targets): the scaling's shape
        identity = TargetScaling(shift=torch.zeros_like(first), scale=torch.ones_like(first))
        crps = self.output.crps(wide, identity, actual).sum()
        ends = self.output.quantiles(
            wide, identity, [q for pair in COVERAGE.values() for q in pair]
        )
        inside = [
            ((ends[..., 2 * j] <= actual) & (actual <= ends[..., 2 * j + 1])).double().sum()
            for j in range(len(COVERAGE))
        ]
        return torch.stack([crps.double().cpu(), *(x.cpu() for x in inside)])

    def reset(self) -> None:
        super().reset()
        self.windows_seen = 0

"""Spread calibration of a probabilistic forecaster (``model.calibration=spread``).

Trained by likelihood on windows it has fitted, a forecaster's intervals tend to come out too
narrow on new windows. The calibration is one factor that widens (above 1) or narrows every
forecast distribution about its median: a normal's or Student-t's spread, a quantile set's
distances from its middle quantile, sampled paths' distances from their median; the median, and
so the point forecast, stays where it is. ``SpreadSearch`` picks it at each validation epoch: the
factor among ``FACTORS`` with the lowest mean CRPS over every validation window. The module keeps
it in a buffer, so the checkpoint of an epoch holds the factor fitted on that epoch's validation
pass, and the test step and ``rnnlab.predict`` use the factor that goes with the weights they
load. Validation's own metrics stay those of the uncalibrated forecasts.

Scored on the windows it was fitted on, a fitted factor would look better than it is. The
``val/<metric>_calibrated`` metrics are cross-fitted instead: the validation windows are split in
two by parity, and each half is scored with the factor fitted on the other.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from rnnlab.batch import TargetScaling
from rnnlab.models.intervals import COVERAGE
from rnnlab.models.predictive import Probabilistic

CALIBRATIONS = ("none", "spread", "coverage")  # coverage: rnnlab.models.coverage_calibration
# 1/3 .. 3, each 5.6 % from the next; 1 (no change) is FACTORS[20]
FACTORS = torch.logspace(-1, 1, 41, base=3.0, dtype=torch.float64)


class SpreadSearch(Metric):
    """Sums over the validation windows, per fold (window parity) and candidate factor, of the
    CRPS and of the actuals inside each central interval (``COVERAGE``) of the widened forecasts;
    summed across DDP processes, so every process picks the same factor."""

    full_state_update = False
    higher_is_better = False
    crps: torch.Tensor  # (fold, factor)
    inside: torch.Tensor  # (fold, factor, interval)
    count: torch.Tensor  # (fold): values scored

    def __init__(self, output: Probabilistic) -> None:
        super().__init__()
        self.output = output
        factors, intervals = len(FACTORS), len(COVERAGE)
        zeros = torch.zeros
        self.add_state("crps", zeros(2, factors, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "inside", zeros(2, factors, intervals, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.windows_seen = 0  # the next window's index in this process: its fold is its parity

    def update(self, values: torch.Tensor, scaling: TargetScaling, actual: torch.Tensor) -> None:
        """Add a batch: the output's ``values`` (as its scores read them) and the ``actual``
        targets (batch, horizon, targets; original units)."""
        dtype = self.count.dtype  # float64, but float32 on MPS (set_dtype)
        actual = actual.to(dtype)
        rows = actual.shape[0]
        fold = (torch.arange(rows, device=actual.device) + self.windows_seen) % 2
        self.windows_seen += rows
        folds = torch.nn.functional.one_hot(fold, 2).to(dtype).T  # (2, batch)
        per_window = actual[0].numel()
        self.count += (folds.sum(1) * per_window).to(self.count.device)
        levels = sorted({q for pair in COVERAGE.values() for q in pair})
        for i, factor in enumerate(FACTORS.tolist()):
            wide = self.output.widen(values, factor)
            crps = self.output.crps(wide, scaling, actual).to(dtype).reshape(rows, -1).sum(1)
            self.crps[:, i] += (folds.to(crps.device) @ crps).to(self.crps.device)
            found = self.output.quantiles(wide, scaling, levels).to(dtype)
            for j, (low, high) in enumerate(COVERAGE.values()):
                lower, upper = found[..., levels.index(low)], found[..., levels.index(high)]
                hits = ((lower <= actual) & (actual <= upper)).to(dtype).reshape(rows, -1).sum(1)
                self.inside[:, i, j] += (folds @ hits.to(folds.device)).to(self.inside.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``spread_factor``, fitted on every window (1 when there were none), and the
        cross-fitted ``crps_calibrated`` and ``coverage_<level>_calibrated`` (NaN with fewer than
        two windows)."""
        total = self.count.sum()
        if total == 0:
            return {"spread_factor": torch.tensor(1.0, dtype=torch.float64)}
        found = {"spread_factor": FACTORS[int(self.crps.sum(0).argmin())]}
        coverage = [f"{key}_calibrated" for key in COVERAGE]
        if bool((self.count == 0).any()):
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {**found, "crps_calibrated": nan, **dict.fromkeys(coverage, nan)}
        # each fold's factor (its lowest CRPS sum), scored on the other fold
        chosen = self.crps.argmin(1)
        other = torch.tensor([1, 0], device=chosen.device)
        found["crps_calibrated"] = self.crps[other, chosen].sum() / total
        inside = self.inside[other, chosen].sum(0) / total
        return {**found, **{key: inside[j] for j, key in enumerate(coverage)}}

    def reset(self) -> None:
        super().reset()
        self.windows_seen = 0

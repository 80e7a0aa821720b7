"""A probabilistic forecaster's interval metrics per stage: ``<stage>/crps``, ``pinball``,
``coverage_80``, ``coverage_95`` and ``interval_width_80`` of the model's forecasts, and the same
with ``_seasonal_naive`` for that baseline's empirical intervals (its forecast plus quantiles of
its errors on the training part), all in original units on the same windows
(``rnnlab.models.intervals`` defines each score)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rnnlab.batch import RESIDUAL_LEVELS, Batch
from rnnlab.models import intervals
from rnnlab.models.base import StageMetrics
from rnnlab.models.predictive import DEFAULT_LEVELS, Probabilistic, check_levels

INTERVAL_BASELINE = "seasonal_naive"  # the one baseline with intervals (from the data)


class Scores:
    """Which interval metrics ``output`` gets, and how a batch updates them. ``levels`` are the
    quantiles reported (the pinball loss's levels, ``rnnlab.predict``'s columns): those trained
    for a quantile output, ``quantiles`` or (0.1, 0.5, 0.9) for a distribution."""

    def __init__(self, output: Probabilistic, quantiles: Sequence[float] | None) -> None:
        self.output = output
        chosen = check_levels(quantiles, "model.quantiles") if quantiles else DEFAULT_LEVELS
        self.levels: tuple[float, ...] = getattr(output, "levels", chosen)
        ends = intervals.INTERVAL_ENDS
        self.extra = tuple(q for q in ends if output.has(q))
        self.keys = ["crps", "pinball"] + [
            key
            for key, pair in {**intervals.COVERAGE, **intervals.WIDTH}.items()
            if all(q in self.extra for q in pair)
        ]
        self.all_keys = ["crps", "pinball", *intervals.COVERAGE, *intervals.WIDTH]

    def metrics(self, baselines: Sequence[str]) -> dict[str, intervals.IntervalMetrics]:
        """The stage's interval metrics by handle."""
        found = {"intervals": intervals.IntervalMetrics(self.keys)}
        if INTERVAL_BASELINE in baselines:
            found[f"intervals_{INTERVAL_BASELINE}"] = intervals.IntervalMetrics(
                self.all_keys, f"_{INTERVAL_BASELINE}"
            )
        return found

    def update(
        self,
        metrics: StageMetrics,
        stage: str,
        values: torch.Tensor,
        batch: Batch,
        dtype: torch.dtype,
    ) -> dict[float, torch.Tensor]:
        """Score the output's ``values`` (normalised parameters, or draws) and, where the batch
        carries its residual quantiles, the seasonal-naive baseline's intervals; the model's
        quantiles by level (original units), for ``intervals``."""
        scaling, actual = batch.target_scaling(), batch.targets().to(dtype)
        wanted = sorted({*self.levels, *self.extra})
        found = self.output.quantiles(values, scaling, wanted).to(dtype)
        quantile_at = {q: found[..., i] for i, q in enumerate(wanted)}
        crps = self.output.crps(values, scaling, actual).to(dtype)
        metrics.update(
            stage, "intervals", intervals.interval_values(quantile_at, crps, actual, self.levels)
        )
        handle = f"intervals_{INTERVAL_BASELINE}"
        if handle in metrics.names.get(stage, []):
            self._update_baseline(metrics, stage, handle, batch, actual)
        return quantile_at

    def _update_baseline(
        self, metrics: StageMetrics, stage: str, handle: str, batch: Batch, actual: torch.Tensor
    ) -> None:
        """The seasonal-naive forecast plus its scaled training-error quantiles, scored."""
        extras = batch.forecast
        if extras is None or extras.residual_quantiles is None:
            return
        dtype = actual.dtype
        point = batch.baselines[INTERVAL_BASELINE].to(dtype)
        scale = torch.nan_to_num(extras.mase_scale.to(dtype), nan=0.0)[:, None, :, None]
        levels = sorted({*self.levels, *intervals.INTERVAL_ENDS})
        grid = intervals.crps_grid().to(dtype=dtype, device=point.device)
        wanted_levels = torch.cat([grid, torch.tensor(levels, dtype=dtype, device=point.device)])
        known = RESIDUAL_LEVELS.to(dtype=dtype, device=point.device)
        table = extras.residual_quantiles.to(dtype)
        band = point[..., None] + scale * intervals.at_levels(table, known, wanted_levels)
        quantile_at = {q: band[..., len(grid) + i] for i, q in enumerate(levels)}
        crps = intervals.crps_from_grid(band[..., : len(grid)], actual)
        metrics.update(
            stage, handle, intervals.interval_values(quantile_at, crps, actual, self.levels)
        )

    @staticmethod
    def intervals(quantile_at: dict[float, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The central intervals among ``quantile_at`` (``update``'s), as ``"80% interval"``
        (batch, horizon, targets, 2: low and high) and ``"95% interval"``."""
        return {
            f"{key.removeprefix('coverage_')}% interval": torch.stack(
                [quantile_at[low], quantile_at[high]], dim=-1
            ).float()
            for key, (low, high) in intervals.COVERAGE.items()
            if low in quantile_at and high in quantile_at
        }

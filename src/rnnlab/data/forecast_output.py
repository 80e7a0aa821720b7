"""``rnnlab.predict``'s table for a forecaster: one row per series and future step, the targets
in original units, and a probabilistic model's quantiles beside them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnlab.data.series import Series, file_name
from rnnlab.data.windows import future_times


def quantile_names(targets: list[str], levels: list[float]) -> list[str]:
    """``p10``, ``p50``, ... for each level (``<target>_p10``, ... with several targets)."""
    names = [f"p{100 * q:g}" for q in levels]
    return [f"{t}_{p}" if len(targets) > 1 else p for t in targets for p in names]


def prediction_table(
    outputs: list[dict[str, torch.Tensor]],
    series: list[Series],
    horizon: int,
    time_column: str,
    target_columns: list[str],
    series_column: str | None,
) -> pd.DataFrame:
    """The rows of ``outputs`` (``predict_step``'s, in ``series`` order): columns named as in the
    file (a setting spells '${' as '$\\\\{'): the series, ``step``, the time, the targets, then
    the quantiles where the model gives them."""
    forecasts = torch.cat([o["prediction"] for o in outputs]).numpy()
    targets = [file_name(c) for c in target_columns]
    quantiles: np.ndarray | None = None
    names: list[str] = []
    if outputs and "quantiles" in outputs[0]:
        quantiles = torch.cat([o["quantiles"] for o in outputs]).numpy()
        names = quantile_names(targets, outputs[0]["levels"].tolist())
    rows = []
    for i, (s, forecast) in enumerate(zip(series, forecasts, strict=True)):
        future = future_times(s.times, horizon)
        for step in range(horizon):
            row: dict[str, Any] = {"step": step + 1, file_name(time_column): future[step]}
            if series_column:
                row = {file_name(series_column): s.name, **row}
            row.update(zip(targets, forecast[step].tolist(), strict=True))
            if quantiles is not None:
                row.update(zip(names, quantiles[i, step].reshape(-1).tolist(), strict=True))
            rows.append(row)
    return pd.DataFrame(rows)

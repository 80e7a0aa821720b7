"""Reading a forecasting model's prediction input: the recent history of each series in the
training format, and, for a model with inputs known over the horizon (future covariates,
calendar), the rows after its last target value that carry them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from rnnlab.data.covariates import check_complete
from rnnlab.data.inputs import STORED_LIMIT
from rnnlab.data.series import Series, Table, fill_missing, read_csv
from rnnlab.data.windows import SeriesData, future_times
from rnnlab.utils.errors import DataError

if TYPE_CHECKING:
    from rnnlab.data.forecast import ForecastDataModule


def read_prediction_input(
    module: ForecastDataModule, path: str
) -> tuple[list[Series], list[SeriesData]]:
    """Each series' history (the forecast starts after it: ``prediction_frame``'s times) and
    its windows' data: the history, then the ``horizon`` steps ahead where the model reads
    known inputs."""
    if Path(path).suffix.lower() == ".ts":
        raise DataError(
            f"{path} is a .ts file, but this checkpoint is a forecasting model: "
            f"input must be a CSV with columns {[module.time_column, *module.columns]}"
        )
    table = read_csv(path, "input", module.max_file_mb, STORED_LIMIT)
    series = module._series(table, training=False)
    if module.per_series:
        unknown = [s.name for s in series if s.name not in module.series_names]
        if unknown:
            raise DataError(
                f"{table.where}: series {unknown[0]!r} was not in the training data, and "
                "this model normalises per series (data.per_series=true)"
            )
    places = [module._where(s, table) for s in series]
    static = module.known.rows(table, series, places, module.time_column, fit=False)
    data, history = [], []
    for s, row in zip(series, static, strict=True):
        n = split_future(s, module.num_targets) if module.known.has_future else len(s.times)
        if n < module.lookback:
            what = "rows with a target value" if module.known.has_future else "rows"
            raise DataError(
                f"{module._where(s, table)} has {n} {what}; the model reads the last "
                f"lookback = {module.lookback} steps"
            )
        past = head(s, n)
        values = fill_missing(past, module.missing, [(0, n)], table, module.columns)
        times = past.times
        if module.known.has_future:  # the known inputs over the horizon follow the history
            where, future = module._where(s, table), module.known.future
            # the rows ahead: a window reads only their known columns (WindowDataset)
            ahead, rows = forecast_rows(s, n, module.horizon, table, where, future)
            values, times = np.vstack([values, rows]), np.concatenate([times, ahead])
        raw = torch.tensor(np.hstack([values, module.known.block(row, times)]), dtype=torch.float32)
        index = module.series_names.index(s.name) if module.per_series else 0
        data.append(SeriesData(raw, module.normalizers[index]))
        history.append(past)
    # the forecast starts after each series' history (prediction_frame's times)
    return history, data


def split_future(series: Series, num_targets: int) -> int:
    """How many leading steps of a prediction input's series are history: up to its last row
    with a target value; the rows after it (no target) carry the future-known inputs."""
    observed = np.flatnonzero(~np.isnan(series.values[:, :num_targets]).all(axis=1))
    return int(observed[-1]) + 1 if len(observed) else 0


def head(series: Series, end: int) -> Series:
    return Series(series.name, series.times[:end], series.values[:end], series.rows[:end])


def forecast_rows(
    series: Series, n: int, horizon: int, table: Table, where: str, future: dict[int, str]
) -> tuple[np.ndarray, np.ndarray]:
    """The times and values (NaN where absent) of the ``horizon`` steps after a prediction
    input's history, its first ``n`` steps: its next rows, which must exist and hold the future
    covariates (``future``: value index -> name) when there are any; else its next time stamps."""
    follow = len(series.times) - n
    if future and follow < horizon:
        names = list(future.values())
        raise DataError(
            f"{where}: the model reads future covariates {names} over the {horizon} steps after "
            f"the last target value ({table.row(series.rows[n - 1])}), but {follow} rows follow "
            f"it; add the {horizon} rows to forecast, targets empty and {names} filled"
        )
    check_complete(series, n + horizon, table, future)
    if follow >= horizon:
        return series.times[n : n + horizon], series.values[n : n + horizon]
    times = pd.DatetimeIndex(future_times(series.times[:n], horizon)).to_numpy()
    return times, np.full((horizon, series.values.shape[1]), np.nan)

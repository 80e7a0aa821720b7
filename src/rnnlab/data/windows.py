"""Forecasting windows: ``lookback`` input steps, then the next ``horizon`` targets, cut from a
series at a forecast origin; their dataset, the naive and seasonal-naive forecasts of the same
windows, causal gap filling, MASE's scale, the collation into ``Batch`` and the time stamps of
a forecast.

No input of a window reads a value at or after its origin: inputs with gaps are filled from
values before the origin only (``causal_fill``), and the baselines repeat observed inputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from rnnlab.batch import Batch, ForecastExtras, TargetScaling
from rnnlab.data.normalize import Normalizer
from rnnlab.utils.errors import ConfigError

log = logging.getLogger(__name__)

# the forecasts every window with targets carries beside its own (Batch.baselines)
BASELINES = ("naive", "seasonal_naive")


def check_window_settings(lookback: int, horizon: int, stride: int, season_length: int) -> None:
    for key, value in (("lookback", lookback), ("horizon", horizon), ("stride", stride)):
        if int(value) < 1:
            raise ConfigError(f"data.{key} must be >= 1, got {value}")
    if not 1 <= season_length <= lookback:
        raise ConfigError(
            f"data.season_length must lie in [1, lookback={lookback}], got {season_length}; "
            "the seasonal-naive baseline may only read the model's own input window"
        )


def check_split_settings(
    val_start: object, test_start: object, val_fraction: float, test_fraction: float
) -> None:
    if (val_start is None) != (test_start is None):
        raise ConfigError("set both data.val_start and data.test_start, or neither")
    if val_start is None and not (
        val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1
    ):
        raise ConfigError(
            "data.val_fraction and data.test_fraction must be > 0 with a sum below 1, got "
            f"{val_fraction} and {test_fraction}"
        )


def window_origins(start: int, end: int, lookback: int, horizon: int, stride: int) -> list[int]:
    """Forecast origins ``t`` (first target step) of the windows whose targets ``[t, t+horizon)``
    lie in ``[start, end)`` and whose inputs ``[t-lookback, t)`` start at or after step 0.
    Anchored at the end, so the part's last step is always a target; ascending."""
    return origin_array(start, end, lookback, horizon, stride).tolist()


def origin_array(start: int, end: int, lookback: int, horizon: int, stride: int) -> np.ndarray:
    """``window_origins`` as an int64 array."""
    last = end - horizon
    first = max(start, lookback)
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(last, first - 1, -stride, dtype=np.int64)[::-1].copy()


class WindowIndex(Sequence[tuple[int, int]]):
    """Windows as two integer arrays, each window's series (int32) and forecast origin (int64):
    12 bytes a window (a list of ``(series, origin)`` tuples takes about 100), read as such
    tuples of Python ints."""

    def __init__(self, series: np.ndarray, origins: np.ndarray) -> None:
        self.series = np.asarray(series, dtype=np.int32)
        self.origins = np.asarray(origins, dtype=np.int64)

    @classmethod
    def of(cls, origins: list[np.ndarray]) -> WindowIndex:
        """The windows of every series, in order: ``origins[s]`` are series ``s``'s."""
        counts = [len(o) for o in origins]
        series = np.repeat(np.arange(len(origins), dtype=np.int32), counts)
        joined = np.concatenate(origins) if origins else np.zeros(0, dtype=np.int64)
        return cls(series, joined)

    def __len__(self) -> int:
        return len(self.series)

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> WindowIndex: ...

    def __getitem__(self, index: int | slice) -> tuple[int, int] | WindowIndex:
        if isinstance(index, slice):
            return WindowIndex(self.series[index], self.origins[index])
        return int(self.series[index]), int(self.origins[index])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.series.tolist(), self.origins.tolist(), strict=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == [tuple(window) for window in other]

    __hash__ = None  # type: ignore[assignment]


def seasonal_naive(history: torch.Tensor, horizon: int, season: int) -> torch.Tensor:
    """Repeat the last ``season`` observed steps: step h (from 0) copies ``t + h - season *
    (h // season + 1)``. ``season`` 1 is the naive (last value) forecast."""
    steps = torch.arange(horizon)
    return history[len(history) + steps - season * (steps // season + 1)]


def causal_fill(observed: np.ndarray, origin: int, fallback: np.ndarray) -> np.ndarray:
    """``observed[:origin]`` (time, columns; NaN where missing) with each gap filled linearly
    from the observed values before ``origin`` only: a gap after a column's last observation
    before the origin holds that observation, one before its first holds the first; a column
    with no observation before the origin takes ``fallback`` (the training mean)."""
    past = observed[:origin].copy()
    steps = np.arange(origin)
    for column in range(past.shape[1]):
        values = past[:, column]
        known = ~np.isnan(values)
        if known.all():
            continue
        if known.any():
            values[~known] = np.interp(steps[~known], steps[known], values[known])
        else:
            values[:] = fallback[column]
    return past


@dataclass(frozen=True)
class WindowSpec:
    """The shape of every window: ``lookback`` input steps, then ``horizon`` target steps of the
    first ``num_targets`` columns; the seasonal-naive baseline repeats ``season_length`` steps.
    ``known``: the columns known over the horizon too (future covariates, calendar); when there
    are any, the inputs go on over the horizon (``WindowDataset``) and the last column is
    ``is_future``."""

    lookback: int
    horizon: int
    num_targets: int
    season_length: int
    known: tuple[int, ...] = ()

    @property
    def steps(self) -> int:
        """Input steps of a window."""
        return self.lookback + self.horizon if self.known else self.lookback


@dataclass
class SeriesData:
    """One series as the windows read it: ``raw`` values (time, columns; gaps filled), the
    ``normalizer`` its inputs use, MASE's ``mase_scale`` and, for ``missing=interpolate``,
    the ``observed`` values with their gaps (NaN)."""

    raw: torch.Tensor
    normalizer: Normalizer
    mase_scale: torch.Tensor | None = None
    observed: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.inputs = self.normalizer.transform(self.raw)


class WindowDataset(Dataset):
    """Windows ``(series, origin)``: normalised inputs and, ``with_targets``, raw targets and the
    naive and seasonal-naive forecasts of the same window.

    A window whose inputs have gaps in ``observed`` fills them from values before its own origin
    only (``causal_fill``), so no input reads a value at or after the forecast origin, its
    targets included. With columns known over the horizon (``spec.known``) the ``horizon``
    steps after the history read those columns at the forecast times, every other column
    holding its last value of the history, and ``is_future`` (the last column) at 1."""

    def __init__(
        self,
        spec: WindowSpec,
        series: list[SeriesData],
        windows: Sequence[tuple[int, int]],
        with_targets: bool = True,
    ) -> None:
        self.spec, self.series = spec, series
        self.windows, self.with_targets = windows, with_targets

    def __len__(self) -> int:
        return len(self.windows)

    def _window_inputs(self, s: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised and raw inputs of the window of series ``s`` with origin ``t``."""
        data, start = self.series[s], t - self.spec.lookback
        if data.observed is None or not np.isnan(data.observed[start:t]).any():
            return data.inputs[start:t], data.raw[start:t]
        shift = data.normalizer.shift
        assert shift is not None
        filled = causal_fill(data.observed, t, shift.double().numpy())
        raw = torch.tensor(filled[start:], dtype=torch.float32)
        return data.normalizer.transform(raw), raw

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec = self.spec
        s, t = self.windows[index]
        data, targets = self.series[s], spec.num_targets
        shift, scale = data.normalizer.shift, data.normalizer.scale
        assert shift is not None and scale is not None
        x, raw_inputs = self._window_inputs(s, t)
        if spec.known:
            ahead, known = raw_inputs[-1].repeat(spec.horizon, 1), list(spec.known)
            ahead[:, known] = data.raw[t : t + spec.horizon, known]
            ahead[:, -1] = 1.0
            x = torch.cat([x, data.normalizer.transform(ahead)])
        item: dict[str, Any] = {
            "x": x,
            "lengths": spec.steps,
            "shift": shift[:targets],
            "scale": scale[:targets],
            "series": s,
            "origin": t,
            "index": index,
        }
        if self.with_targets:
            history = raw_inputs[:, :targets]
            item["y"] = data.raw[t : t + spec.horizon, :targets]
            item["history"] = history
            item["naive"] = seasonal_naive(history, spec.horizon, 1)
            item["seasonal_naive"] = seasonal_naive(history, spec.horizon, spec.season_length)
            item["mase_scale"] = data.mase_scale
        return item


def collate_windows(items: list[dict[str, Any]]) -> Batch:
    """Window items -> ``Batch`` (targets, baselines and history only when the items have them)."""
    stacked = default_collate(items)
    batch = Batch(
        x=stacked["x"],
        lengths=stacked["lengths"].to(torch.int64),
        y=stacked.get("y"),
        index=stacked["index"],
        scaling=TargetScaling(stacked["shift"], stacked["scale"]),
    )
    if batch.y is not None:
        batch.baselines = {k: stacked[k] for k in BASELINES}
        batch.forecast = ForecastExtras(stacked["mase_scale"], stacked["history"])
    return batch


def mase_scale(train_targets: torch.Tensor, season: int) -> torch.Tensor:
    """Mean absolute seasonal difference (``season`` steps) of a series' training targets (time,
    targets): MASE's denominator. NaN where it is undefined, a training part no longer than a
    season or whose seasonal differences are all 0 (a constant target): MASE leaves those
    series out rather than divide by 0 or by a stand-in."""
    if len(train_targets) <= season:
        return torch.full((train_targets.shape[1],), float("nan"))
    train_targets = train_targets.double()  # a float32 sum of large differences overflows
    scale = (train_targets[season:] - train_targets[:-season]).abs().mean(dim=0)
    return torch.where(scale > 0, scale, torch.full_like(scale, float("nan"))).float()


def first_step_at(times: np.ndarray, start: str | float) -> int:
    """Index of the first of ``times`` at or after ``start`` (parsed like the time column)."""
    if np.issubdtype(times.dtype, np.datetime64):
        point = np.datetime64(pd.Timestamp(str(start)).to_datetime64(), "ns")
        return int(np.searchsorted(times.astype("datetime64[ns]"), point, side="left"))
    return int(np.searchsorted(times, float(start), side="left"))


def warn_undefined_mase(
    scales: list[torch.Tensor], places: list[str], columns: list[str], season: int
) -> None:
    """Name each series and target column whose MASE is undefined (a NaN ``mase_scale``), and
    so left out of MASE; ``places`` names the series in messages."""
    for place, scale in zip(places, scales, strict=True):
        for column, value in zip(columns, scale.tolist(), strict=True):
            if math.isnan(value):
                log.warning(
                    "%s column %r: the train part's seasonal differences (season_length=%d) are "
                    "all 0 or absent, so MASE, their mean as denominator, is undefined for it: "
                    "MASE leaves it out (NaN when no series is left)",
                    place,
                    column,
                    season,
                )


def future_times(times: np.ndarray, horizon: int) -> list[Any]:
    """The next ``horizon`` time stamps after a series, at its usual step (its last interval for
    numbers; the inferred calendar frequency for dates, else the last interval)."""
    if np.issubdtype(times.dtype, np.datetime64):
        index = pd.DatetimeIndex(times)
        freq = pd.infer_freq(index[-min(len(index), 20) :]) if len(index) >= 3 else None
        if freq is not None:
            return list(pd.date_range(index[-1], periods=horizon + 1, freq=freq)[1:])
    step = times[-1] - times[-2] if len(times) > 1 else 1
    return [times[-1] + step * (k + 1) for k in range(horizon)]

"""Forecast windows' parts on their own, value by value: the time stamps after a series, MASE's
scale, a gap-filled window's inputs and the collated batch (what mutation testing found unchecked
by the end-to-end forecasting tests in test_forecast.py)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.data.normalize import Normalizer
from rnnlab.data.windows import (
    SeriesData,
    WindowDataset,
    WindowSpec,
    collate_windows,
    future_times,
    mase_scale,
    warn_undefined_mase,
)


def _dates(*days: str) -> np.ndarray:
    return pd.DatetimeIndex(list(days)).values


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        (np.array([0, 2, 5]), [8, 11, 14]),  # the last interval, not the first or the mean
        (np.array([3.0, 5.0]), [7.0, 9.0, 11.0]),
        (np.array([4]), [5, 6, 7]),  # one time stamp: a step of 1
    ],
)
def test_future_times_of_numbers_repeat_the_last_interval(times, expected):
    assert future_times(times, 3) == expected


def test_future_times_of_dates_follow_the_calendar_frequency():
    # three month starts are enough to infer 'MS': April and May, not 29 days after March
    months = _dates("2024-01-01", "2024-02-01", "2024-03-01")
    assert future_times(months, 2) == [pd.Timestamp("2024-04-01"), pd.Timestamp("2024-05-01")]
    # the frequency is inferred from the last 20 stamps: earlier irregular ones do not matter
    # (ending on 1 February, whose last interval, 31 days, would give 4 March)
    regular = pd.date_range("2019-07-01", periods=20, freq="MS")
    late = pd.DatetimeIndex(["2018-03-07", "2018-11-30"]).append(regular).values
    assert future_times(late, 1) == [pd.Timestamp("2021-03-01")]


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # two stamps: too few to infer a frequency, the last interval (31 days) instead
        (_dates("2024-01-01", "2024-02-01"), ["2024-03-03", "2024-04-03"]),
        # no frequency fits: the last interval (3 days)
        (_dates("2024-01-01", "2024-01-02", "2024-01-05"), ["2024-01-08", "2024-01-11"]),
    ],
)
def test_future_times_of_dates_without_a_frequency_repeat_the_last_interval(times, expected):
    assert [pd.Timestamp(t) for t in future_times(times, 2)] == [pd.Timestamp(e) for e in expected]


def test_mase_scale_is_the_mean_absolute_seasonal_difference():
    targets = torch.tensor([[1.0, 0.0], [3.0, 0.5], [2.0, 0.0], [6.0, 0.5]])
    torch.testing.assert_close(mase_scale(targets, 1), torch.tensor([7 / 3, 0.5]))
    # season 2: column 1 repeats itself exactly, so its scale is undefined
    torch.testing.assert_close(
        mase_scale(targets, 2), torch.tensor([2.0, math.nan]), equal_nan=True
    )
    assert mase_scale(targets, 1).dtype == torch.float32


@pytest.mark.parametrize("season", [4, 5])
def test_mase_scale_is_nan_per_target_without_a_seasonal_difference(season):
    scale = mase_scale(torch.arange(8.0).view(4, 2), season)
    assert scale.shape == (2,) and torch.isnan(scale).all()


def _gappy_dataset() -> WindowDataset:
    """One series, two columns; column 1 has no observation before step 4."""
    observed = np.array([[1.0, np.nan], [2.0, np.nan], [np.nan, np.nan], [4.0, np.nan], [5, 8]])
    raw = torch.tensor(np.nan_to_num(observed, nan=0.0), dtype=torch.float32)
    normalizer = Normalizer("none")
    normalizer.shift, normalizer.scale = torch.tensor([0.0, 10.0]), torch.tensor([1.0, 2.0])
    series = SeriesData(raw, normalizer, mase_scale=torch.tensor([1.0]), observed=observed)
    spec = WindowSpec(lookback=4, horizon=1, num_targets=1, season_length=2)
    return WindowDataset(spec, [series], [(0, 4)])


def test_a_gap_filled_window_takes_the_training_mean_where_a_column_has_no_past():
    item = _gappy_dataset()[0]
    # column 0 interpolated from its own past; column 1 has none: the fallback is the shift
    expected_raw = torch.tensor([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 10.0]])
    torch.testing.assert_close(item["history"], expected_raw[:, :1])
    assert item["x"].dtype == torch.float32
    normalised = (expected_raw - torch.tensor([0.0, 10.0])) / torch.tensor([1.0, 2.0])
    torch.testing.assert_close(item["x"], normalised)


def test_collated_windows_keep_their_dataset_index_and_int64_lengths():
    dataset = _gappy_dataset()
    dataset.windows = [(0, 4), (0, 4), (0, 4)]
    batch = collate_windows([dataset[2], dataset[0]])
    assert batch.index is not None and batch.index.tolist() == [2, 0]
    assert batch.lengths.dtype == torch.int64 and batch.lengths.tolist() == [4, 4]
    assert batch.y is not None and batch.y.shape == (2, 1, 1)
    assert set(batch.baselines) == {"naive", "seasonal_naive"}


def test_undefined_mase_is_named_per_series_and_column(caplog):
    scales = [torch.tensor([1.0, math.nan]), torch.tensor([math.nan, 2.0])]
    with caplog.at_level(logging.WARNING, logger="rnnlab.data.windows"):
        warn_undefined_mase(scales, ["series 'a'", "series 'b'"], ["y", "z"], 7)
    tail = (
        ": the train part's seasonal differences (season_length=7) are all 0 or absent, so MASE, "
        "their mean as denominator, is undefined for it: MASE leaves it out (NaN when no series "
        "is left)"
    )
    assert caplog.messages == [f"series 'a' column 'z'{tail}", f"series 'b' column 'y'{tail}"]
    # a series or column left unnamed would hide an undefined MASE: the lengths must agree
    with pytest.raises(ValueError):
        warn_undefined_mase(scales, ["series 'a'"], ["y", "z"], 7)
    with pytest.raises(ValueError):
        warn_undefined_mase(scales, ["series 'a'", "series 'b'"], ["y"], 7)

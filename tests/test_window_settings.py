"""The forecasting windows' settings checks and split points (``rnnlab.data.windows``), called
directly: each refusal whole, each boundary on both sides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rnnlab.data.windows import check_split_settings, check_window_settings, first_step_at
from rnnlab.utils.errors import ConfigError


def _refusal(check, *args) -> str:
    with pytest.raises(ConfigError) as refused:
        check(*args)
    return str(refused.value)


def test_window_settings_are_refused_whole_and_accepted_at_their_limits():
    assert _refusal(check_window_settings, 4, 2, 0, 1) == "data.stride must be >= 1, got 0"
    assert _refusal(check_window_settings, 4, 0, 1, 1) == "data.horizon must be >= 1, got 0"
    assert _refusal(check_window_settings, 4, 2, 1, 5) == (
        "data.season_length must lie in [1, lookback=4], got 5; the seasonal-naive baseline "
        "may only read the model's own input window"
    )
    check_window_settings(1, 1, 1, 1)
    check_window_settings(4, 2, 3, 4)  # a season as long as the lookback


@pytest.mark.parametrize(
    ("val", "test"), [(0.0, 0.2), (0.2, 0.0), (0.5, 0.5), (0.6, 0.5), (-0.1, 0.2)]
)
def test_split_fractions_outside_the_open_simplex_are_refused(val, test):
    assert _refusal(check_split_settings, None, None, val, test) == (
        "data.val_fraction and data.test_fraction must be > 0 with a sum below 1, got "
        f"{val} and {test}"
    )


def test_split_settings_by_time_need_both_starts():
    message = "set both data.val_start and data.test_start, or neither"
    assert _refusal(check_split_settings, "2020-01-01", None, 0.1, 0.1) == message
    assert _refusal(check_split_settings, None, 5, 0.1, 0.1) == message
    check_split_settings(None, None, 0.49, 0.5)
    check_split_settings(3, 5, 0.0, 0.0)  # the fractions are unused with the starts


def test_the_first_step_at_a_start_is_the_first_at_or_after_it():
    numbers = np.arange(0.0, 20.0, 2.0)
    assert first_step_at(numbers, 6) == 3  # a time present: that step
    assert first_step_at(numbers, "6.5") == 4  # between two: the later
    assert first_step_at(numbers, -1) == 0 and first_step_at(numbers, 100) == 10
    dates = pd.date_range("2020-01-01", periods=5, freq="D").to_numpy()
    assert first_step_at(dates, "2020-01-03") == 2
    assert first_step_at(dates, "2020-01-03 12:00") == 3
    seconds = dates.astype("datetime64[s]")  # another unit: compared in nanoseconds
    assert first_step_at(seconds, "2020-01-03") == 2

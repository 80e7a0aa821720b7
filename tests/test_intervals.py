"""Scores of probabilistic forecasts (rnnlab.models.intervals) against independent computations:
scipy's distributions, brute-force sums over samples, Monte Carlo with many draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rnnlab.models import intervals


def test_pinball_charges_each_side_by_its_level():
    quantile, level = torch.tensor(10.0), torch.tensor(0.9)
    assert intervals.pinball(quantile, torch.tensor(12.0), level).item() == pytest.approx(1.8)
    assert intervals.pinball(quantile, torch.tensor(7.0), level).item() == pytest.approx(0.3)
    assert intervals.pinball(quantile, torch.tensor(10.0), level).item() == 0.0


def _brute_crps(samples: np.ndarray, actual: float) -> float:
    """E|X - y| - E|X - X'| / 2 over distinct pairs, by a double loop."""
    n = len(samples)
    pairs = sum(abs(a - b) for i, a in enumerate(samples) for j, b in enumerate(samples) if i != j)
    return float(np.mean(np.abs(samples - actual)) - pairs / (2 * n * (n - 1)))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=12),
    st.floats(-100, 100, allow_nan=False),
)
def test_crps_from_samples_equals_the_pairwise_definition(samples, actual):
    values = torch.tensor(samples, dtype=torch.float64)
    found = intervals.crps_from_samples(values, torch.tensor(actual, dtype=torch.float64))
    assert found.item() == pytest.approx(_brute_crps(np.array(samples), actual), abs=1e-9)


def test_crps_of_identical_samples_is_the_absolute_error():
    samples = torch.full((5,), 3.0, dtype=torch.float64)
    assert intervals.crps_from_samples(samples, torch.tensor(5.5)).item() == pytest.approx(2.5)


@pytest.mark.parametrize("actual", [-2.0, 0.3, 1.0, 4.0])
def test_closed_forms_match_many_samples(actual):
    rng = np.random.default_rng(0)
    loc, scale, df = 1.0, 2.0, 4.0
    y = torch.tensor(actual, dtype=torch.float64)
    normal = torch.from_numpy(rng.normal(loc, scale, 200_000))
    exact = intervals.crps_normal(torch.tensor(loc), torch.tensor(scale), y).item()
    assert exact == pytest.approx(intervals.crps_from_samples(normal, y).item(), rel=0.01)
    t = torch.from_numpy(stats.t.rvs(df, loc, scale, size=200_000, random_state=1))
    exact_t = intervals.crps_student_t(
        torch.tensor(loc, dtype=torch.float64),
        torch.tensor(scale, dtype=torch.float64),
        torch.tensor(df, dtype=torch.float64),
        y,
    ).item()
    assert exact_t == pytest.approx(intervals.crps_from_samples(t, y).item(), rel=0.01)
    # the grid estimate from exact quantiles is within 1 % of the closed form
    grid = intervals.crps_grid().numpy()
    quantiles = torch.from_numpy(stats.norm.ppf(grid, loc, scale))
    assert intervals.crps_from_grid(quantiles, y).item() == pytest.approx(exact, rel=0.01)


def test_student_t_with_many_degrees_of_freedom_scores_as_a_normal():
    args = [torch.tensor(v, dtype=torch.float64) for v in (0.5, 1.5)]
    y = torch.tensor(2.0, dtype=torch.float64)
    t = intervals.crps_student_t(*args, torch.tensor(1e6, dtype=torch.float64), y).item()
    assert t == pytest.approx(intervals.crps_normal(*args, y).item(), rel=1e-4)


def test_at_levels_interpolates_and_holds_the_ends():
    known = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    values = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    wanted = torch.tensor([0.05, 0.1, 0.3, 0.7, 0.95], dtype=torch.float64)
    assert intervals.at_levels(values, known, wanted).tolist() == pytest.approx(
        [1.0, 1.0, 1.5, 3.0, 4.0]
    )


def test_interval_values_count_coverage_and_width():
    actual = torch.tensor([0.0, 1.0, 5.0, -3.0], dtype=torch.float64)
    quantile_at = {
        q: torch.full_like(actual, v)
        for q, v in {0.025: -2.5, 0.1: -1.0, 0.5: 0.0, 0.9: 1.0, 0.975: 2.5}.items()
    }
    values = intervals.interval_values(quantile_at, torch.zeros_like(actual), actual, (0.5,))
    assert values["coverage_80"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert values["coverage_95"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert values["interval_width_80"].tolist() == [2.0] * 4
    assert values["pinball"].tolist() == pytest.approx([0.0, 0.5, 2.5, 1.5])
    # an interval without both its levels is not scored
    del quantile_at[0.975]
    assert "coverage_95" not in intervals.interval_values(
        quantile_at, torch.zeros_like(actual), actual, (0.5,)
    )


def test_interval_metrics_average_every_value_of_every_batch():
    metric = intervals.IntervalMetrics(["crps", "coverage_80"], "_x")
    metric.update({"crps": torch.tensor([1.0, 3.0]), "coverage_80": torch.tensor([1.0, 0.0])})
    metric.update({"crps": torch.tensor([[5.0]]), "coverage_80": torch.tensor([[1.0]])})
    found = {k: v.item() for k, v in metric.compute().items()}
    assert found == pytest.approx({"crps_x": 3.0, "coverage_80_x": 2 / 3})


def test_at_levels_with_one_or_two_known_levels():
    one = torch.tensor([[7.0]], dtype=torch.float64)
    wanted = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert intervals.at_levels(one, torch.tensor([0.5], dtype=torch.float64), wanted).tolist() == [
        [7.0, 7.0, 7.0]
    ]
    two = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    known = torch.tensor([0.25, 0.75], dtype=torch.float64)
    assert intervals.at_levels(two, known, wanted).tolist() == [[1.0, 2.0, 3.0]]


def test_grid_and_sample_scores_keep_float64_and_each_value_apart():
    grid = intervals.crps_grid()
    assert grid.dtype == torch.float64 and grid[0].item() == 0.005 and grid[-1].item() == 0.995
    # two values scored at once: each its own CRPS, not one pooled over both
    samples = torch.tensor([[0.0, 2.0, 4.0], [10.0, 10.0, 10.0]], dtype=torch.float64)
    actual = torch.tensor([1.0, 12.0], dtype=torch.float64)
    found = intervals.crps_from_samples(samples, actual).tolist()
    assert found == pytest.approx([_brute_crps(samples[0].numpy(), 1.0), 2.0])
    grid_found = intervals.crps_from_grid(samples[:, :1].expand(2, 100), actual)
    assert grid_found.tolist() == pytest.approx([1.0, 2.0])  # a point mass: the absolute error


def test_interval_values_key_by_name_and_count_an_actual_on_an_end_as_inside():
    actual = torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64)
    quantile_at = {0.1: torch.full_like(actual, -1.0), 0.9: torch.full_like(actual, 1.0)}
    crps = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    values = intervals.interval_values(quantile_at, crps, actual, (0.1, 0.9))
    assert values["crps"] is crps
    assert values["coverage_80"].dtype == torch.float64
    assert values["coverage_80"].tolist() == [1.0, 1.0, 1.0]  # both ends belong to the interval
    only_low = {0.025: torch.zeros_like(actual), **quantile_at}
    assert "coverage_95" not in intervals.interval_values(only_low, crps, actual, (0.1,))


def test_interval_metrics_name_keys_as_given_and_sum_in_float64():
    metric = intervals.IntervalMetrics(["crps"])
    metric.update({"crps": torch.tensor([1e8], dtype=torch.float64)})
    for _ in range(4):
        metric.update({"crps": torch.tensor([1.0], dtype=torch.float64)})
    found = metric.compute()
    assert list(found) == ["crps"]
    # float32 sums would lose the ones beside 1e8
    assert metric.crps.dtype == torch.float64 and metric.crps.item() == 1e8 + 4


def test_a_width_needs_both_of_its_ends():
    actual = torch.zeros(2, dtype=torch.float64)
    only_low = {0.1: torch.full_like(actual, -1.0), 0.5: actual}
    values = intervals.interval_values(only_low, actual, actual, (0.5,))
    assert "interval_width_80" not in values and "coverage_80" not in values

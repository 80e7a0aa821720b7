"""Every method of every forecast output on small float64 tensors, each against a computation
that shares no code with it: scipy's distributions, numerical integrals of the CRPS definition,
sums over a discrete support, hand-written parametrisations. Fast, in-process (the mutation
presets of predictive.py and distributions.py run it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from rnnlab.batch import TargetScaling
from rnnlab.models.distributions import NegativeBinomial, Normal, StudentT
from rnnlab.models.predictive import (
    Point,
    Quantiles,
    Samples,
    check_levels,
    per_value,
    spread_of,
)
from rnnlab.utils.errors import ConfigError, DataError

# two windows, one step, one target; shifts and scales that differ per window
SCALING = TargetScaling(
    torch.tensor([[3.0], [-1.0]], dtype=torch.float64),
    torch.tensor([[2.0], [0.5]], dtype=torch.float64),
)
ACTUAL = torch.tensor([[[4.2]], [[-1.9]]], dtype=torch.float64)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def exact(found: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to float64's last bits (levels taken in another precision would show)."""
    torch.testing.assert_close(found, expected, rtol=1e-13, atol=0)


def raw(*columns: tuple[float, float]) -> torch.Tensor:
    """Head outputs (2, 1, 1, width): one column per parameter, a value per window."""
    return torch.tensor(list(zip(*columns, strict=True)), dtype=torch.float64).view(2, 1, 1, -1)


def crps_by_integral(cdf, actual: float, low: float, high: float) -> float:
    """The CRPS from its definition: the integral of (F(x) - 1{x >= y})^2 over x."""
    below, _ = integrate.quad(lambda x: cdf(x) ** 2, low, actual, limit=200)
    above, _ = integrate.quad(lambda x: (1 - cdf(x)) ** 2, actual, high, limit=200)
    return below + above


def test_helpers_spread_and_per_value():
    zero = torch.tensor(0.0, dtype=torch.float64)
    assert spread_of(zero).item() == pytest.approx(math.log(2) + 1e-3, abs=1e-12)
    value = torch.zeros(2, 3, 1)
    shift, scale = per_value(SCALING, value)
    assert shift[:, 2, 0].tolist() == [3.0, -1.0] and scale[:, 0, 0].tolist() == [2.0, 0.5]


def test_point_output():
    values = raw((0.5, -2.0))
    torch.testing.assert_close(
        Point().point(values, SCALING)[:, 0, 0], torch.tensor([4.0, -2.0], dtype=torch.float64)
    )
    draw = Point().inverse_cdf(values, SCALING, torch.full((2, 1, 1), 0.9))
    torch.testing.assert_close(draw[:, 0, 0], torch.tensor([4.0, -2.0], dtype=torch.float64))
    assert Point().location_mask().tolist() == [True]


# --- normal -----------------------------------------------------------------------------------
NORMAL = raw((0.5, -0.25), (0.3, -1.0))  # location, raw spread


def _normal_original(i: int) -> tuple[float, float]:
    loc, spread = [0.5, -0.25][i], softplus([0.3, -1.0][i]) + 1e-3
    shift, scale = [3.0, -1.0][i], [2.0, 0.5][i]
    return loc * scale + shift, spread * scale


def _check_location_scale(output, values: torch.Tensor, family, width: float, rel: float) -> None:
    """The loss, quantiles, draws and CRPS of a location-scale output against scipy's
    ``family(i, loc, scale)`` for window ``i``: the loss on the normalised scale, the rest in
    original units; the CRPS against its defining integral over ``width`` scales each side."""
    target = torch.tensor([[[0.1]], [[-0.7]]], dtype=torch.float64)  # normalised
    expected_loss = -np.mean(
        [
            family(i, [0.5, -0.25][i], values[i, 0, 0, 1].item()).logpdf([0.1, -0.7][i])
            for i in range(2)
        ]
    )
    assert output.loss(values, target, SCALING).item() == pytest.approx(expected_loss, rel=1e-10)
    levels = [0.05, 0.5, 0.8]
    found = output.quantiles(values, SCALING, levels)
    uniform = torch.tensor([[[0.3]], [[0.9]]], dtype=torch.float64)
    draws = output.inverse_cdf(values, SCALING, uniform)
    crps = output.crps(values, SCALING, ACTUAL)
    for i in range(2):
        loc, scale = _normal_original(i)
        original = family(i, loc, scale)
        np.testing.assert_allclose(found[i, 0, 0].numpy(), original.ppf(levels), rtol=1e-10)
        assert draws[i, 0, 0].item() == pytest.approx(original.ppf([0.3, 0.9][i]), rel=1e-10)
        exact = crps_by_integral(
            original.cdf, ACTUAL[i].item(), loc - width * scale, loc + width * scale
        )
        assert crps[i, 0, 0].item() == pytest.approx(exact, rel=rel)


def test_normal_parameters_loss_quantiles_draws_and_crps():
    output = Normal()
    values = output.arrange(NORMAL)
    assert values[..., 1].flatten().tolist() == pytest.approx(
        [softplus(0.3) + 1e-3, softplus(-1.0) + 1e-3]
    )
    assert output.location_mask().tolist() == [True, False]
    _check_location_scale(
        output, values, lambda i, loc, scale: stats.norm(loc, scale), width=40, rel=1e-6
    )
    assert output.point(values, SCALING)[:, 0, 0].tolist() == pytest.approx(
        [_normal_original(i)[0] for i in range(2)]
    )


# --- Student-t --------------------------------------------------------------------------------
STUDENT = raw((0.5, -0.25), (0.3, -1.0), (0.0, 1.5))  # location, raw spread, raw degrees


def test_student_t_parameters_loss_quantiles_draws_and_crps():
    output = StudentT()
    values = output.arrange(STUDENT)
    df = [2 + softplus(0.0), 2 + softplus(1.5)]
    assert values[..., 2].flatten().tolist() == pytest.approx(df)
    assert values[..., 1].flatten().tolist() == pytest.approx(
        [softplus(0.3) + 1e-3, softplus(-1.0) + 1e-3]
    )
    assert output.location_mask().tolist() == [True, False, False]
    _check_location_scale(
        output, values, lambda i, loc, scale: stats.t(df[i], loc, scale), width=1e4, rel=1e-4
    )


# --- negative binomial ------------------------------------------------------------------------
COUNTS = TargetScaling(
    torch.tensor([[20.0], [0.5]], dtype=torch.float64),
    torch.tensor([[5.0], [0.25]], dtype=torch.float64),
)
BINOMIAL = raw((0.4, -3.0), (-0.5, 0.2))  # location, raw dispersion


def _binomial(i: int) -> tuple[float, float]:
    """Mean (counts) and dispersion of window i, by hand."""
    shift, scale = [20.0, 0.5][i], [5.0, 0.25][i]
    mean = softplus([0.4, -3.0][i] * scale + shift) + 1e-6
    return mean, softplus([-0.5, 0.2][i]) + 1e-3


def _scipy_binomial(i: int):
    mean, dispersion = _binomial(i)
    size = 1 / dispersion
    return stats.nbinom(size, size / (size + mean))


def test_negative_binomial_mean_dispersion_and_likelihood():
    output = NegativeBinomial()
    values = output.arrange(BINOMIAL)
    mean, dispersion = output._counts(values, COUNTS)
    for i in range(2):
        # torch's softplus is x itself above 20 (its threshold): 1e-10 of the hand value
        assert mean[i, 0, 0].item() == pytest.approx(_binomial(i)[0], rel=1e-10)
        assert dispersion[i, 0, 0].item() == pytest.approx(_binomial(i)[1], rel=1e-12)
    counts = torch.tensor([[[23.0]], [[0.0]]], dtype=torch.float64)
    expected = -np.mean([_scipy_binomial(i).logpmf(counts[i].item()) for i in range(2)])
    loss = output.loss(values, COUNTS.normalise(counts), COUNTS)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    # a count a float error away from whole (as normalising and back leaves it) still counts
    near = COUNTS.normalise(counts + 1e-4)
    assert output.loss(values, near, COUNTS).item() == pytest.approx(expected, rel=1e-9)


def test_negative_binomial_quantiles_draws_median_and_crps():
    output = NegativeBinomial()
    values = output.arrange(BINOMIAL)
    levels = [0.1, 0.5, 0.9]
    found = output.quantiles(values, COUNTS, levels)
    uniform = torch.tensor([[[0.3]], [[0.95]]], dtype=torch.float64)
    draws = output.inverse_cdf(values, COUNTS, uniform)
    point = output.point(values, COUNTS)
    actual = torch.tensor([[[23.0]], [[2.0]]], dtype=torch.float64)
    crps = output.crps(values, COUNTS, actual)
    for i in range(2):
        law = _scipy_binomial(i)
        assert found[i, 0, 0].tolist() == law.ppf(levels).tolist()
        assert draws[i, 0, 0].item() == law.ppf([0.3, 0.95][i])
        assert point[i, 0, 0].item() == law.ppf(0.5)
        support = np.arange(0, int(law.ppf(1 - 1e-12)) + 1)
        exact = float(np.sum((law.cdf(support) - (support >= actual[i].item())) ** 2))
        assert crps[i, 0, 0].item() == pytest.approx(exact, rel=0.03)


# --- quantiles --------------------------------------------------------------------------------
def test_quantile_output_point_quantiles_draws_and_loss():
    output = Quantiles([0.1, 0.5, 0.9])
    values = output.arrange(raw((0.0, 1.0), (-1.0, 0.5), (2.0, 0.0)))  # below, centre, above
    centre = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    low = centre - torch.tensor([softplus(0.0), softplus(1.0)], dtype=torch.float64) - 1e-3
    high = centre + torch.tensor([softplus(2.0), softplus(0.0)], dtype=torch.float64) + 1e-3
    exact(values[:, 0, 0], torch.stack([low, centre, high], dim=-1))
    assert output.location_mask().tolist() == [True, True, True]
    shift, scale = (
        torch.tensor([3.0, -1.0], dtype=torch.float64),
        torch.tensor([2.0, 0.5], dtype=torch.float64),
    )
    original = values[:, 0, 0] * scale[:, None] + shift[:, None]
    exact(output.point(values, SCALING)[:, 0, 0], original[:, 1])
    found = output.quantiles(values, SCALING, [0.05, 0.3, 0.9, 0.95])
    exact(found[:, 0, 0, 0], original[:, 0])  # held below the first level
    exact(found[:, 0, 0, 1], (original[:, 0] + original[:, 1]) / 2)
    exact(found[:, 0, 0, 2], original[:, 2])
    exact(found[:, 0, 0, 3], original[:, 2])  # held above the last
    uniform = torch.tensor([[[0.7]], [[0.02]]], dtype=torch.float64)
    draws = output.inverse_cdf(values, SCALING, uniform)[:, 0, 0]
    exact(draws[0], (original[0, 1] + original[0, 2]) / 2)
    exact(draws[1], original[1, 0])
    target = torch.tensor([[[0.4]], [[5.0]]], dtype=torch.float64)
    errors = target[:, 0, 0, None] - values[:, 0, 0]
    levels = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    pinball = torch.where(errors >= 0, levels * errors, (levels - 1) * errors).mean()
    exact(output.loss(values, target, SCALING), pinball)


def test_one_quantile_is_its_own_point_draw_and_quantiles():
    output = Quantiles([0.5])
    values = raw((0.5, -2.0))
    expected = torch.tensor([4.0, -2.0], dtype=torch.float64)
    torch.testing.assert_close(output.point(values, SCALING)[:, 0, 0], expected)
    torch.testing.assert_close(output.quantiles(values, SCALING, [0.1, 0.9])[:, 0, 0, 1], expected)
    draws = output.inverse_cdf(values, SCALING, torch.full((2, 1, 1), 0.99, dtype=torch.float64))
    torch.testing.assert_close(draws[:, 0, 0], expected)


# --- samples ----------------------------------------------------------------------------------
def test_samples_are_scored_as_their_empirical_distribution():
    draws = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0], dtype=torch.float64).view(1, 1, 1, 5)
    output = Samples()
    # the smallest draw with at least that share at or below it
    found = output.quantiles(draws, SCALING, [0.1, 0.2, 0.21, 0.5, 0.6, 0.61, 1.0])
    assert found[0, 0, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0]
    assert output.point(draws, SCALING).item() == 3.0
    even = torch.tensor([4.0, 1.0, 3.0, 2.0], dtype=torch.float64).view(1, 1, 1, 4)
    assert output.point(even, SCALING).item() == 2.0
    actual = torch.tensor([[[2.5]]], dtype=torch.float64)
    pairs = sum(abs(a - b) for a in range(1, 6) for b in range(1, 6)) / (2 * 5 * 4)
    expected = np.mean(np.abs(np.arange(1, 6) - 2.5)) - pairs
    assert output.crps(draws, SCALING, actual).item() == pytest.approx(expected)


def test_five_quantiles_step_out_from_the_median_along_the_last_dimension():
    output = Quantiles([0.05, 0.25, 0.5, 0.75, 0.95])
    head = torch.tensor([0.3, -0.2, 1.0, 0.1, 0.4], dtype=torch.float64)
    raw_values = torch.stack([head, head + 1.0]).view(2, 1, 1, 5)  # windows differ
    values = output.arrange(raw_values)
    for i in range(2):
        r = raw_values[i, 0, 0].tolist()
        step = [softplus(v) + 1e-3 for v in r]
        centre = r[2]
        expected = [
            centre - step[1] - step[0],
            centre - step[1],
            centre,
            centre + step[3],
            centre + step[3] + step[4],
        ]
        assert values[i, 0, 0].tolist() == pytest.approx(expected, rel=1e-12)


def test_quantile_draws_hold_the_outermost_quantile_beyond_it():
    output = Quantiles([0.1, 0.5, 0.9])
    values = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64).view(1, 1, 1, 3)
    unit = TargetScaling(
        torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    )
    uniform = torch.tensor([[[0.99]]], dtype=torch.float64)
    assert output.inverse_cdf(values, unit, uniform).item() == 3.0  # not 3.0 + (0.99-0.9)/0.4 * 2


def test_levels_at_zero_or_one_are_refused_whole():
    for levels in ([0.0, 0.5], [0.5, 1.0]):
        with pytest.raises(ConfigError) as error:
            check_levels(levels, "model.quantiles")
        assert str(error.value) == (
            f"model.quantiles={levels} must list distinct probabilities strictly between 0 "
            "and 1, e.g. [0.1,0.5,0.9]"
        )
    assert Normal().has(0.025) and StudentT().has(0.975)  # a distribution has every quantile


def test_negative_binomial_names_the_one_value_that_is_not_a_count():
    output = NegativeBinomial()
    values = output.arrange(BINOMIAL)
    counts = torch.tensor([[[23.0]], [[2.5]]], dtype=torch.float64)
    with pytest.raises(DataError, match=r"but a target is 2\.5; use"):
        output.loss(values, COUNTS.normalise(counts), COUNTS)

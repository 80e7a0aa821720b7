"""Probabilistic outputs of the forecaster (rnnlab.models.predictive): parameters, losses and
quantiles against torch's and scipy's distributions, quantiles that never cross, relative
forecasting that moves locations only, and the settings' errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from rnnlab.batch import TargetScaling
from rnnlab.models import intervals
from rnnlab.models.distributions import NegativeBinomial, Normal, StudentT, output_of
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.predictive import Point, Quantiles
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.utils.errors import ConfigError, DataError

SCALING = TargetScaling(shift=torch.tensor([[10.0], [-3.0]]), scale=torch.tensor([[2.0], [0.5]]))


def raw(width: int, seed: int = 0) -> torch.Tensor:
    """Head outputs for a batch of 2 windows, 3 steps, 1 target."""
    return torch.randn(2, 3, 1, width, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, (4, 5), elements=st.floats(-30, 30, width=32)),
    st.lists(st.floats(0.01, 0.99), min_size=1, max_size=5, unique=True),
)
def test_quantiles_never_cross_whatever_the_head_gives(values, levels):
    output = Quantiles(levels)
    arranged = output.arrange(torch.from_numpy(values)[..., : output.width])
    assert bool((arranged.diff(dim=-1) > 0).all())
    # the level nearest the median is the head's own value
    a = output.anchor
    assert torch.equal(arranged[..., a], torch.from_numpy(values)[..., a])


def test_normal_loss_quantiles_and_crps_follow_torch_and_scipy():
    output = Normal()
    values = output.arrange(raw(2))
    target = torch.randn(2, 3, 1, generator=torch.Generator().manual_seed(1))
    loc, spread = values[..., 0], values[..., 1]
    expected = -torch.distributions.Normal(loc, spread).log_prob(target).mean()
    torch.testing.assert_close(output.loss(values, target, SCALING), expected)
    shift, scale = SCALING.shift[:, None], SCALING.scale[:, None]
    found = output.quantiles(values, SCALING, [0.1, 0.5, 0.9])
    reference = stats.norm.ppf(
        [0.1, 0.5, 0.9],
        (loc * scale + shift)[..., None].numpy(),
        (spread * scale)[..., None].numpy(),
    )
    np.testing.assert_allclose(found.numpy(), reference, rtol=1e-5)
    torch.testing.assert_close(output.point(values, SCALING), (loc * scale + shift))


def test_student_t_quantiles_follow_scipy_with_finite_variance():
    output = StudentT()
    values = output.arrange(raw(3))
    assert bool((values[..., 2] > 2).all())  # degrees of freedom
    shift, scale = SCALING.shift[:, None], SCALING.scale[:, None]
    found = output.quantiles(values, SCALING, [0.025, 0.975])
    reference = stats.t.ppf(
        [0.025, 0.975],
        values[..., 2][..., None].numpy(),
        (values[..., 0] * scale + shift)[..., None].numpy(),
        (values[..., 1] * scale)[..., None].numpy(),
    )
    np.testing.assert_allclose(found.numpy(), reference, rtol=1e-5)


def test_negative_binomial_has_the_mean_it_claims_and_scipys_quantiles():
    output = NegativeBinomial()
    counts = TargetScaling(shift=torch.tensor([[40.0], [5.0]]), scale=torch.tensor([[9.0], [2.0]]))
    values = output.arrange(raw(2))
    mean, dispersion = output._counts(values, counts)
    distribution = output._distribution(values, counts)
    torch.testing.assert_close(distribution.mean, mean)
    torch.testing.assert_close(
        distribution.variance, mean + dispersion * mean**2, rtol=1e-5, atol=0
    )
    size = (1 / dispersion).double().numpy()
    reference = stats.nbinom.ppf(0.9, size, size / (size + mean.double().numpy()))
    np.testing.assert_array_equal(
        output.quantiles(values, counts, [0.9])[..., 0].numpy(), reference
    )


def test_negative_binomial_refuses_targets_that_are_not_counts():
    output = NegativeBinomial()
    values = output.arrange(raw(2))
    whole = SCALING.normalise(torch.tensor([[[3.0], [0.0], [7.0]], [[1.0], [2.0], [3.0]]]))
    assert torch.isfinite(output.loss(values, whole, SCALING))
    for bad in (2.5, -1.0):
        target = SCALING.normalise(torch.full((2, 3, 1), bad))
        with pytest.raises(DataError, match=r"needs counts.*model\.distribution=normal"):
            output.loss(values, target, SCALING)


def test_quantile_loss_is_the_mean_pinball_loss():
    output = Quantiles([0.9, 0.1, 0.5])
    assert output.levels == (0.1, 0.5, 0.9)
    values = output.arrange(raw(3))
    target = torch.zeros(2, 3, 1)
    levels = torch.tensor([0.1, 0.5, 0.9])
    error = target[..., None] - values
    expected = torch.maximum(levels * error, (levels - 1) * error).mean()
    torch.testing.assert_close(output.loss(values, target, SCALING), expected)
    assert output.has(0.1) and not output.has(0.025)


@pytest.mark.parametrize(
    ("distribution", "quantiles", "message"),
    [
        ("poisson", None, "unknown distribution 'poisson'; set model.distribution to one of"),
        (None, [0.5, 1.2], r"model.quantiles=\[0.5, 1.2\] must list distinct probabilities"),
        (None, [0.5, 0.5], "must list distinct"),
        (None, [], "must list distinct"),
    ],
)
def test_bad_settings_are_named(distribution, quantiles, message):
    with pytest.raises(ConfigError, match=message):
        output_of(distribution, quantiles)


def test_point_output_is_the_default():
    assert type(output_of(None, None)) is Point


def _model(distribution=None, quantiles=None, relative=True, **settings) -> SequenceRegressor:
    torch.manual_seed(0)
    encoder = RNNEncoder(input_size=2, hidden_size=8, cell="gru", pooling="last")
    return SequenceRegressor(
        encoder,
        optimizer=torch.optim.Adam,
        horizon=3,
        num_targets=1,
        relative=relative,
        distribution=distribution,
        quantiles=quantiles,
        **settings,
    ).eval()


@pytest.mark.parametrize(
    ("distribution", "quantiles"),
    [("normal", None), ("student_t", None), (None, [0.1, 0.5, 0.9])],
)
def test_relative_forecasts_move_locations_with_the_level_and_nothing_else(distribution, quantiles):
    model = _model(distribution, quantiles)
    x = torch.randn(4, 6, 2, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([6, 5, 6, 3])
    lifted = x.clone()
    lifted[..., 0] += 7.0  # the target column: the whole history one level higher
    with torch.no_grad():
        before, after = model(x, lengths), model(lifted, lengths)
    moved = model.output.location_mask()
    torch.testing.assert_close(after[..., moved], before[..., moved] + 7.0)
    torch.testing.assert_close(after[..., ~moved], before[..., ~moved])


def test_a_point_model_keeps_its_shapes():
    model = _model()
    out = model(torch.randn(2, 4, 2), torch.tensor([4, 4]))
    assert out.shape == (2, 3, 1)
    assert model.head[1].out_features == 3
    assert _model("student_t").head[1].out_features == 9


def test_quantile_crps_is_that_of_the_distribution_they_describe():
    # actuals drawn from a standard normal; quantiles of that normal at the 100 grid levels
    # score its exact CRPS (within 1 %); three of its quantiles describe a coarser distribution,
    # which must score worse on average (the CRPS is proper), whereas twice their mean pinball
    # loss alone would score better than the truth
    actual = torch.from_numpy(np.random.default_rng(0).normal(size=(4000, 1, 1)))
    unit = TargetScaling(torch.zeros(4000, 1), torch.ones(4000, 1))
    exact = intervals.crps_normal(torch.tensor(0.0), torch.tensor(1.0), actual)

    def scored(levels):
        values = torch.from_numpy(stats.norm.ppf(levels)).expand(4000, 1, 1, len(levels))
        return values, Quantiles(levels).crps(values, unit, actual)

    grid = [(i + 0.5) / 100 for i in range(100)]
    torch.testing.assert_close(scored(grid)[1], exact, rtol=0.01, atol=0)
    coarse = [0.025, 0.5, 0.975]
    values, found = scored(coarse)
    assert found.mean() > exact.mean()
    pinball = intervals.pinball(
        values, actual[..., None], torch.tensor(coarse, dtype=torch.float64)
    )
    assert 2 * pinball.mean() < exact.mean()

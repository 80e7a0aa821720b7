"""The autoregressive decoder (model.decoder=autoregressive): teacher forcing is the sampling
path fed the true values, it is strictly causal, a forecast reads each step's known inputs and
no later ones, draws are the same for the same seed and batch, and relative forecasting moves
them with the level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlab.batch import Batch, TargetScaling
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.utils.errors import ConfigError

HORIZON, FEATURES = 4, 3  # features: the target, then two covariates


def _model(distribution=None, relative=True, bidirectional=False, targets=1) -> SequenceRegressor:
    torch.manual_seed(0)
    encoder = RNNEncoder(
        input_size=FEATURES, hidden_size=8, cell="lstm", bidirectional=bidirectional
    )
    return SequenceRegressor(
        encoder,
        optimizer=torch.optim.Adam,
        horizon=HORIZON,
        num_targets=targets,
        relative=relative,
        distribution=distribution,
        decoder="autoregressive",
        num_samples=5,
    ).eval()


def _batch(future_rows: int = 0, seed: int = 1, targets: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 6 + future_rows, FEATURES, generator=generator)
    scaling = TargetScaling(
        torch.tensor([[2.0], [0.0], [-1.0]]).expand(3, targets),
        torch.tensor([[3.0], [1.0], [0.5]]).expand(3, targets),
    )
    y = torch.randn(3, HORIZON, targets, generator=generator)
    return Batch(
        x=x, lengths=torch.full((3,), x.shape[1]), y=y, scaling=scaling, future_rows=future_rows
    )


def _teacher_forced(model: SequenceRegressor, batch: Batch) -> torch.Tensor:
    assert model.autoregressive is not None
    target = batch.target_scaling().normalise(batch.targets())
    return model.autoregressive.teacher_forced(model.encoder, model.head, batch, target)


@pytest.mark.parametrize(
    ("future_rows", "relative", "targets"),
    [(0, True, 1), (HORIZON, True, 1), (0, False, 1), (HORIZON, False, 2)],
)
def test_teacher_forcing_is_the_sampling_path_fed_the_true_values(future_rows, relative, targets):
    # a point output draws its own forecast: fed back as the 'true' values, teacher forcing
    # must give the very same forecasts
    model = _model(relative=relative, targets=targets)
    batch = _batch(future_rows, targets=targets)
    with torch.no_grad():
        drawn = model.sampled(batch, 0)[..., 0]  # one path: (batch, horizon, targets)
        batch.y = drawn
        forced = _teacher_forced(model, batch)[..., 0]
    torch.testing.assert_close(batch.target_scaling().denormalise(forced), drawn)


def test_teacher_forcing_is_strictly_causal():
    model, batch = _model("normal"), _batch()
    with torch.no_grad():
        before = _teacher_forced(model, batch)
        batch.y = batch.y.clone()
        batch.y[:, 2:] += 5.0  # the values from step 2 on
        after = _teacher_forced(model, batch)
    torch.testing.assert_close(after[:, :3], before[:, :3])  # step h reads values before h only
    assert not torch.allclose(after[:, 3], before[:, 3])


def test_a_forecast_step_reads_its_own_known_inputs_and_no_later_ones():
    model, batch = _model("normal"), _batch(future_rows=HORIZON)
    with torch.no_grad():
        before = _teacher_forced(model, batch)
        batch.x = batch.x.clone()
        batch.x[:, 6 + 2, 1:] += 3.0  # the covariates known at forecast step 2
        after = _teacher_forced(model, batch)
    torch.testing.assert_close(after[:, :2], before[:, :2])
    assert not torch.allclose(after[:, 2], before[:, 2])
    # the target slots of the rows ahead (filled by the data) are never read
    batch.x[:, 6:, 0] = 1e6
    with torch.no_grad():
        torch.testing.assert_close(_teacher_forced(model, batch), after)


def test_draws_repeat_for_a_seed_and_batch_and_differ_across_batches():
    model, batch = _model("student_t"), _batch()
    with torch.no_grad():
        torch.manual_seed(7)
        first, again = model.sampled(batch, 0), model.sampled(batch, 0)
        other = model.sampled(batch, 1)
    assert first.shape == (3, HORIZON, 1, 5)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert bool((first.std(dim=-1) > 0).all())  # the paths differ from each other


@pytest.mark.parametrize("distribution", [None, "normal"])
def test_relative_draws_move_with_the_level(distribution):
    model, batch = _model(distribution), _batch()
    lifted = _batch()
    lifted.x = lifted.x.clone()
    lifted.x[..., 0] += 2.0  # two normalised units higher: 2 * scale in original units
    with torch.no_grad():
        base, moved = model.sampled(batch, 0), model.sampled(lifted, 0)
    shift = 2.0 * batch.target_scaling().scale[:, None, :, None]
    torch.testing.assert_close(moved, base + shift, rtol=1e-5, atol=1e-4)


def test_quantile_output_draws_within_its_outer_quantiles():
    torch.manual_seed(0)
    encoder = RNNEncoder(input_size=FEATURES, hidden_size=8, bidirectional=False)
    model = SequenceRegressor(
        encoder,
        optimizer=torch.optim.Adam,
        horizon=HORIZON,
        quantiles=[0.1, 0.5, 0.9],
        decoder="autoregressive",
        num_samples=50,
    ).eval()
    with torch.no_grad():
        draws = model.sampled(_batch(), 0)
    assert np.isfinite(draws.numpy()).all() and draws.shape[-1] == 50


def test_settings_that_cannot_work_are_refused_in_one_line():
    refusal = (
        "model.decoder=autoregressive steps the RNN through the horizon, so it needs a "
        "one-directional model/encoder=rnn; set model.encoder.bidirectional=false"
    )
    with pytest.raises(ConfigError) as error:
        _model(bidirectional=True)
    assert str(error.value) == refusal
    with pytest.raises(ConfigError, match=r"unknown decoder 'recursive'; set model\.decoder"):
        SequenceRegressor(
            RNNEncoder(input_size=2, bidirectional=False), torch.optim.Adam, decoder="recursive"
        )
    with pytest.raises(ConfigError, match=r"model\.num_samples must be >= 1"):
        SequenceRegressor(
            RNNEncoder(input_size=2, bidirectional=False),
            torch.optim.Adam,
            decoder="autoregressive",
            num_samples=0,
        )


def test_a_point_decoder_forecasts_its_one_path_in_original_units():
    model, batch = _model(), _batch()
    with torch.no_grad():
        drawn = model.sampled(batch, 3)
        predicted = model.predict_step(batch, 3)
    assert drawn.shape[-1] == 1 and "quantiles" not in predicted
    torch.testing.assert_close(predicted["prediction"], drawn[..., 0])


@pytest.mark.parametrize("future_rows", [0, HORIZON])
def test_rows_hold_each_previous_value_beside_its_steps_covariates(future_rows):
    model, batch = _model(relative=False), _batch(future_rows)
    assert model.autoregressive is not None
    rows, ahead, last = model.autoregressive._parts(batch)
    x = batch.x
    torch.testing.assert_close(last, x[:, 5, :1])  # the last observed target
    torch.testing.assert_close(rows[:, :, :1], x[:, :5, :1])  # z(t-1) ...
    torch.testing.assert_close(rows[:, :, 1:], x[:, 1:6, 1:])  # ... beside c(t)
    expected = x[:, 6:, 1:] if future_rows else x[:, 5:6, 1:].expand(-1, HORIZON, -1)
    torch.testing.assert_close(ahead, expected)


@pytest.mark.parametrize("relative", [True, False])
def test_parameters_move_by_the_last_value_only_when_relative(relative):
    model = _model("normal", relative=relative)
    assert model.autoregressive is not None
    out = torch.randn(3, 2, 8, generator=torch.Generator().manual_seed(4))
    last = torch.tensor([[1.0], [-2.0], [0.5]])
    with torch.no_grad():
        found = model.autoregressive._parameters(model.head, out, last)
        plain = model.output.arrange(model.head(out).view(3, 2, 1, 2))
    expected = plain.clone()
    if relative:
        expected[..., 0] += last[:, None]
    torch.testing.assert_close(found, expected)

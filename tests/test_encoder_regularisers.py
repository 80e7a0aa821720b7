"""Variational (locked) dropout and weight drop in the recurrent encoder: one mask per sequence
at every step, one dropped weight_hh per forward pass, the same masks (so the same outputs and
gradients) on the packed and the padded paths, nothing in evaluation, nothing in the stored
weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pad_sequence

from rnnlab.models import layerwise
from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError
from tests.test_encoder import (
    FEATURES,
    HIDDEN,
    PATH_CASES,
    _encoder,
    _outputs_and_gradients,
    _sequences,
)

PROBABILITY = st.sampled_from([0.0, 0.3, 0.6])
ALL = {
    "locked_input_dropout": 0.5,
    "locked_layer_dropout": 0.5,
    "locked_output_dropout": 0.5,
    "weight_drop": 0.5,
}


def _seeded(encoder, x, lengths, impl):
    torch.manual_seed(1234)  # the same random state: the same masks on either path
    return _outputs_and_gradients(encoder, x, lengths, impl)


@settings(max_examples=60, deadline=None)
@given(
    **PATH_CASES,
    locked_input_dropout=PROBABILITY,
    locked_layer_dropout=PROBABILITY,
    locked_output_dropout=PROBABILITY,
    weight_drop=PROBABILITY,
)
def test_packed_and_padded_paths_agree_under_the_same_masks(**case):
    padding, lengths, seed = case.pop("padding"), case.pop("lengths"), case.pop("seed")
    if case["num_layers"] == 1:
        case["locked_layer_dropout"] = 0.0  # refused there (tested below)
    torch.manual_seed(seed)
    encoder = _encoder(case).train()
    x = pad_sequence(_sequences(lengths, seed), batch_first=True, padding_value=padding)
    size = torch.tensor(lengths)
    packed, padded = _seeded(encoder, x, size, "packed"), _seeded(encoder, x, size, "padded")
    torch.testing.assert_close(padded[0], packed[0], rtol=1e-5, atol=1e-5)
    assert padded[1].keys() == packed[1].keys()
    for name in packed[1]:
        torch.testing.assert_close(padded[1][name], packed[1][name], rtol=1e-5, atol=1e-5)
    valid = torch.arange(x.shape[1])[None, :, None] < size[:, None, None]
    torch.testing.assert_close(padded[2] * valid, packed[2] * valid, rtol=1e-5, atol=1e-5)


def _batch(lengths=(6, 4, 7)):
    sequences = _sequences(list(lengths), seed=3)
    return pad_sequence(sequences, batch_first=True), torch.tensor(lengths)


def _constant_over_time(zero: torch.Tensor, lengths: torch.Tensor) -> bool:
    """Whether each (sequence, feature) of ``zero`` (batch, time, features) is zero at all of
    its valid steps or at none."""
    for b, n in enumerate(lengths.tolist()):
        steps = zero[b, :n]
        if not (steps.all(dim=0) | ~steps.any(dim=0)).all():
            return False
    return True


@pytest.mark.parametrize("impl", ["packed", "padded"])
def test_the_input_mask_is_one_per_sequence_the_same_at_every_step(impl):
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, locked_input_dropout=0.5, impl=impl).train()
    x, lengths = _batch()
    x.requires_grad_(True)
    encoder(x, lengths).sum().backward()
    assert x.grad is not None
    dropped = x.grad == 0  # a dropped input feature gets no gradient at any step
    assert _constant_over_time(dropped, lengths)
    valid = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
    assert 0 < (dropped & valid).sum() < valid.sum() * x.shape[-1]  # padding gets none anyway


@pytest.mark.parametrize("impl", ["packed", "padded"])
def test_the_output_mask_is_one_per_sequence_the_same_at_every_step(impl):
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, locked_output_dropout=0.5, pooling="none", impl=impl
    ).train()
    x, lengths = _batch()
    out = encoder(x, lengths)
    assert _constant_over_time(out == 0, lengths)
    assert (out == 0).sum() > 0


def _recording_kernels(monkeypatch) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Every call of the fused kernels: the inputs and the weights they were given."""
    calls: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
    for cell, kernel in list(layerwise.KERNELS.items()):

        def recording(inputs, *args, _kernel=kernel):
            weights = next(a for a in args if isinstance(a, list))
            calls.append((inputs, weights))
            return _kernel(inputs, *args)

        monkeypatch.setitem(layerwise.KERNELS, cell, recording)
    return calls


def test_the_mask_between_layers_is_one_per_sequence_the_same_at_every_step(monkeypatch):
    calls = _recording_kernels(monkeypatch)
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, num_layers=2, locked_layer_dropout=0.5)
    encoder.train()
    x, lengths = _batch((6, 6, 6))
    encoder(x, lengths)  # the padded path: each direction of each layer one call
    second_layer_inputs = calls[2][0]
    assert _constant_over_time(second_layer_inputs == 0, lengths)
    assert (second_layer_inputs == 0).sum() > 0
    # a language model's path (left to right, the state carried) masks the same way
    calls.clear()
    forward = RNNEncoder(FEATURES, HIDDEN, num_layers=2, bidirectional=False, **ALL).train()
    forward.sequence(x)
    assert _constant_over_time(calls[1][0] == 0, lengths)


def test_weight_drop_masks_weight_hh_once_per_forward_and_never_the_parameter(monkeypatch):
    calls = _recording_kernels(monkeypatch)
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, bidirectional=False, weight_drop=0.3).train()
    stored = {k: v.clone() for k, v in encoder.state_dict().items()}
    x, lengths = _batch((6, 6, 6))
    encoder(x, lengths).sum().backward()
    raw = encoder.rnn.weight_hh_l0
    given_hh = calls[0][1][1]
    dropped = given_hh == 0
    assert 0.15 < dropped.float().mean() < 0.45  # about 30 % of the connections, elementwise
    torch.testing.assert_close(given_hh[~dropped], raw[~dropped].detach() / 0.7)
    assert raw.grad is not None and (raw.grad[dropped] == 0).all()  # dropped: no gradient
    assert encoder.state_dict().keys() == stored.keys()  # the raw weights, no mask
    assert all(torch.equal(v, stored[k]) for k, v in encoder.state_dict().items())
    encoder(x, lengths)
    assert not torch.equal(calls[1][1][1], given_hh)  # the next forward, a new mask
    torch.manual_seed(7)
    encoder(x, lengths)
    torch.manual_seed(7)
    encoder(x, lengths)
    assert torch.equal(calls[2][1][1], calls[3][1][1])  # the same seed, the same mask
    encoder.eval()
    encoder.impl = "padded"
    with torch.no_grad():
        encoder(x, lengths)
    assert calls[-1][1][1] is raw  # evaluation: the stored weights themselves


@pytest.mark.parametrize("impl", ["packed", "padded"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_in_evaluation_a_regularised_encoder_is_the_plain_one(impl, cell):
    torch.manual_seed(0)
    layers = {"num_layers": 2, "cell": cell, "impl": impl, "pooling": "none"}
    regularised = RNNEncoder(FEATURES, HIDDEN, **layers, **ALL).eval()
    plain = RNNEncoder(FEATURES, HIDDEN, **layers).eval()
    plain.load_state_dict(regularised.state_dict())
    x, lengths = _batch()
    with torch.no_grad():
        assert torch.equal(regularised(x, lengths), plain(x, lengths))
    forward = {**layers, "bidirectional": False}
    regularised = RNNEncoder(FEATURES, HIDDEN, **forward, **ALL).eval()
    plain = RNNEncoder(FEATURES, HIDDEN, **forward).eval()
    plain.load_state_dict(regularised.state_dict())
    with torch.no_grad():
        (a, state_a), (b, state_b) = regularised.sequence(x), plain.sequence(x)
    assert torch.equal(a, b)
    assert torch.equal(torch.stack(list(state_a)), torch.stack(list(state_b)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_language_model_path_equals_the_padded_path_under_the_same_masks(cell):
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell=cell, bidirectional=False, pooling="none", **ALL
    ).train()
    x, lengths = _batch((6, 6, 6))
    torch.manual_seed(5)
    stepped, _ = encoder.sequence(x)
    torch.manual_seed(5)
    encoder.impl = "padded"
    torch.testing.assert_close(stepped, encoder(x, lengths), rtol=1e-5, atol=1e-6)


def test_no_warning_from_the_kernels_in_training():
    encoder = RNNEncoder(FEATURES, HIDDEN, num_layers=2, **ALL).train()
    x, lengths = _batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for impl in ("packed", "padded"):
            encoder.impl = impl
            encoder(x, lengths).sum().backward()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"weight_drop": 1.0}, "model.encoder.weight_drop=1.0 must be in [0, 1)"),
        (
            {"locked_input_dropout": -0.1},
            "model.encoder.locked_input_dropout=-0.1 must be in [0, 1)",
        ),
        (
            {"locked_output_dropout": float("nan")},
            "model.encoder.locked_output_dropout=nan must be in [0, 1)",
        ),
        (
            {"locked_layer_dropout": 0.3},
            "model.encoder.locked_layer_dropout acts between stacked layers: set "
            "model.encoder.num_layers >= 2, or use locked_input_dropout / locked_output_dropout",
        ),
        (
            {"locked_layer_dropout": 0.3, "num_layers": 2, "dropout": 0.2},
            "model.encoder.dropout and model.encoder.locked_layer_dropout both drop between "
            "layers: set one of them to 0",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_line_with_their_names(settings, message):
    with pytest.raises(ConfigError) as refused:
        RNNEncoder(FEATURES, HIDDEN, **settings)
    assert str(refused.value) == message


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_language_model_path_starts_from_the_state_it_is_given(cell):
    # only the output mask: training's outputs are evaluation's, from the same state, times it
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell=cell, bidirectional=False, locked_output_dropout=0.5
    )
    x, _ = _batch((6, 6, 6))
    with torch.no_grad():
        _, state = encoder.eval().sequence(x)  # the state a first window leaves
        expected, _ = encoder.sequence(x, state)
        trained, _ = encoder.train().sequence(x, state)
    kept = trained != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(trained[kept], 2 * expected[kept])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_state_a_regularised_window_leaves_is_carried_into_the_next(cell):
    # an output mask changes outputs, not the recurrence: the state after a training window is
    # the plain one, shaped to go into the next window
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell=cell, bidirectional=False, locked_output_dropout=0.5
    )
    x, _ = _batch((6, 6, 6))
    with torch.no_grad():
        _, plain = encoder.eval().sequence(x)
        _, trained = encoder.train().sequence(x)
        encoder.sequence(x, trained)  # the next window starts from it

    def parts(state):
        return list(state) if isinstance(state, tuple) else [state]

    assert len(parts(trained)) == len(parts(plain)) == (2 if cell == "lstm" else 1)
    for a, b in zip(parts(trained), parts(plain), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("pooling", ["none", "last"])
def test_the_packed_path_keeps_the_batch_length_and_pools_without_an_output_mask(pooling):
    # a batch padded past its longest sequence (total length 9, longest 6), and weight drop
    # alone (no output mask): the packed path gives what the padded path gives
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, num_layers=2, pooling=pooling, weight_drop=0.4)
    sequences = _sequences([6, 4, 2], seed=4)
    x = torch.nn.functional.pad(pad_sequence(sequences, batch_first=True), (0, 0, 0, 3))
    lengths = torch.tensor([6, 4, 2])
    packed, padded = _seeded(encoder, x, lengths, "packed"), _seeded(encoder, x, lengths, "padded")
    assert packed[0].shape == padded[0].shape
    torch.testing.assert_close(packed[0], padded[0], rtol=1e-5, atol=1e-5)

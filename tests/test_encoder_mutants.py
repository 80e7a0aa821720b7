"""``RNNEncoder``'s details that the path-equality properties of tests/test_encoder.py do not
pin: the exact point where inference packs, the initial weights of each scheme, the learned
initial state, step-by-step reading, names and refusals. Deterministic and fast."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch

from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError

FEATURES, HIDDEN = 4, 6


def test_cpu_inference_packs_exactly_when_padding_is_more_than_half_the_batch():
    encoder = RNNEncoder(FEATURES, HIDDEN, impl="auto")
    cpu = torch.device("cpu")
    half = torch.tensor([4, 2, 1, 1])  # 8 valid steps of 16: exactly half padding
    more = torch.tensor([4, 1, 1, 1])  # 7 of 16
    less = torch.tensor([4, 3, 2, 1])  # 10 of 16
    with torch.no_grad():
        assert encoder.uses_padded(cpu, half)
        assert not encoder.uses_padded(cpu, more)
        assert encoder.uses_padded(cpu, less)
        assert encoder.uses_padded(cpu)  # no lengths: padded
    assert RNNEncoder(FEATURES, HIDDEN, impl="padded").uses_padded(torch.device("meta"))
    assert not RNNEncoder(FEATURES, HIDDEN, impl="packed").uses_padded(cpu, less)


def test_display_names():
    assert RNNEncoder(FEATURES, 64).display_name() == "BiLSTM, 64 units"
    gru = RNNEncoder(FEATURES, 32, num_layers=2, cell="gru", bidirectional=False)
    assert gru.display_name() == "2-layer GRU, 32 units"
    rnn = RNNEncoder(FEATURES, 8, num_layers=3, cell="rnn", bidirectional=True)
    assert rnn.display_name() == "3-layer BiRNN, 8 units"


@pytest.mark.parametrize(
    ("sizes", "shown"),
    [((0, 5, 1), "0, 5, 1"), ((3, 0, 1), "3, 0, 1"), ((3, 5, 0), "3, 5, 0")],
)
def test_sizes_below_one_are_refused_naming_each(sizes, shown):
    input_size, hidden_size, num_layers = sizes
    with pytest.raises(ConfigError) as caught:
        RNNEncoder(input_size, hidden_size, num_layers=num_layers)
    assert str(caught.value) == (
        f"input_size, hidden_size and num_layers must be >= 1, got {shown}"
    )


def test_refusals_of_the_vanilla_rnn_knobs_are_worded_exactly():
    with pytest.raises(ConfigError) as caught:
        RNNEncoder(FEATURES, HIDDEN, cell="lstm", nonlinearity="relu")
    assert str(caught.value) == (
        "model.encoder.nonlinearity=relu applies to cell=rnn only; the gates of cell=lstm fix "
        "its nonlinearities: set it to null"
    )
    with pytest.raises(ConfigError) as caught:
        RNNEncoder(FEATURES, HIDDEN, cell="gru", init="irnn")
    assert str(caught.value) == (
        "model.encoder.init=irnn (identity recurrent weights) is for cell=rnn only, not the "
        "gated cell=gru: use init=orthogonal or init=default"
    )
    assert RNNEncoder(FEATURES, HIDDEN, cell="rnn").nonlinearity == "tanh"
    assert RNNEncoder(FEATURES, HIDDEN, cell="rnn").rnn.nonlinearity == "tanh"


def test_dropout_applies_between_layers_only():
    assert RNNEncoder(FEATURES, HIDDEN, num_layers=1, dropout=0.4).rnn.dropout == 0.0
    assert RNNEncoder(FEATURES, HIDDEN, num_layers=2, dropout=0.4).rnn.dropout == 0.4


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_orthogonal_init_per_gate(cell):
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, num_layers=2, cell=cell, bidirectional=True)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    for name, param in encoder.rnn.named_parameters():
        param = param.detach()
        if name.startswith("weight_hh"):
            for gate in param.split(HIDDEN):
                torch.testing.assert_close(gate @ gate.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)
        elif name.startswith("weight_ih"):
            fan_in = param.shape[1]
            bound = math.sqrt(6 / (fan_in + HIDDEN))  # Xavier, of one gate (HIDDEN outputs)
            assert param.abs().max() <= bound
            for gate in param.split(HIDDEN):
                assert gate.abs().max() > 0.5 * bound  # drawn up to the gate's bound
            assert len(param.split(HIDDEN)) == gates
        elif cell == "lstm" and name.startswith("bias_ih"):
            expected = torch.zeros(gates * HIDDEN)
            expected[HIDDEN : 2 * HIDDEN] = 1.0
            assert torch.equal(param, expected), name
        else:
            assert not param.any(), name


def test_default_init_leaves_pytorchs_weights():
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="gru", init="default")
    torch.manual_seed(0)
    reference = torch.nn.GRU(FEATURES, HIDDEN, batch_first=True, bidirectional=True)
    for (name, param), (_, expected) in zip(
        encoder.rnn.named_parameters(), reference.named_parameters(), strict=True
    ):
        assert torch.equal(param, expected), name
    assert any(p.detach().abs().sum() > 0 for n, p in encoder.rnn.named_parameters() if "bias" in n)


def test_irnn_init_draws_input_weights_of_the_papers_scale():
    torch.manual_seed(0)
    encoder = RNNEncoder(60, 50, cell="rnn", nonlinearity="relu", init="irnn")
    weight = encoder.rnn.weight_ih_l0.detach()
    assert abs(float(weight.std()) - 0.001) < 1e-4
    assert abs(float(weight.mean())) < 1e-4
    assert torch.equal(encoder.rnn.weight_hh_l0_reverse, torch.eye(50))
    assert not encoder.rnn.bias_hh_l0_reverse.any() and not encoder.rnn.bias_ih_l0.any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_learned_initial_state_starts_every_sequence(cell):
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell=cell, bidirectional=False, learned_init=True
    )
    assert encoder.h0 is not None and encoder.h0.shape == (2, 1, HIDDEN)
    assert (encoder.c0 is not None) == (cell == "lstm")
    with torch.no_grad():
        encoder.h0.normal_()
        if encoder.c0 is not None:
            encoder.c0.normal_()
    x = torch.randn(3, 5, FEATURES)
    h0 = encoder.h0.expand(-1, 3, -1).contiguous()
    state = (h0, encoder.c0.expand(-1, 3, -1).contiguous()) if cell == "lstm" else h0
    with torch.no_grad():
        expected, _ = encoder.rnn(x, state)
        out, _ = encoder.sequence(x)
        torch.testing.assert_close(out, expected)
        zero, _ = encoder.rnn(x)
        assert not torch.allclose(out, zero)
    plain = RNNEncoder(FEATURES, HIDDEN, cell=cell, bidirectional=False)
    assert plain.h0 is None and plain.c0 is None and plain._initial_state(3) is None


def test_step_by_step_equals_the_sequence_and_a_bidirectional_encoder_refuses():
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="lstm", bidirectional=False, learned_init=True)
    with torch.no_grad():
        encoder.h0.normal_()
    x = torch.randn(2, 4, FEATURES)
    with torch.no_grad():
        full, final = encoder.sequence(x)
        state: Any = None
        for t in range(4):
            y_t, state = encoder.step(x[:, t], state)
            torch.testing.assert_close(y_t, full[:, t])
        torch.testing.assert_close(state[0], final[0])
        torch.testing.assert_close(state[1], final[1])
        # a carried state continues where the first half stopped
        _, half = encoder.sequence(x[:, :2])
        rest, _ = encoder.sequence(x[:, 2:], half)
        torch.testing.assert_close(rest, full[:, 2:])
    with pytest.raises(ConfigError) as caught:
        RNNEncoder(FEATURES, HIDDEN).sequence(x)
    assert str(caught.value) == (
        "a bidirectional encoder reads the future, so it cannot run step by step or generate; "
        "set model.encoder.bidirectional=false"
    )


@pytest.mark.parametrize("impl", ["packed", "padded"])
def test_pooling_by_hand(impl):
    """mean and max over the valid steps only, and every step with padding zeroed, for a
    one-unit linear RNN (h_t = x_t: zero recurrent weight, identity input weight, relu)."""
    encoder = RNNEncoder(
        1, 1, cell="rnn", nonlinearity="relu", bidirectional=False, init="irnn", impl=impl
    )
    with torch.no_grad():
        encoder.rnn.weight_hh_l0.zero_()
        encoder.rnn.weight_ih_l0.fill_(1.0)
    x = torch.tensor([[1.0, 5.0, 3.0], [2.0, 9.0, 9.0]]).unsqueeze(-1)
    lengths = torch.tensor([3, 1])
    expected = {
        "mean": [[3.0], [2.0]],
        "max": [[5.0], [2.0]],
        "last": [[3.0], [2.0]],
        "none": [[[1.0], [5.0], [3.0]], [[2.0], [0.0], [0.0]]],
    }
    for pooling, values in expected.items():
        encoder.pooling = pooling
        with torch.no_grad():
            assert encoder(x, lengths).tolist() == values, pooling


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "none"])
def test_the_padded_path_runs_on_the_device_of_x_with_lengths_on_the_cpu(pooling):
    """Lengths come from the DataLoader on the CPU while x is on an accelerator: every mask and
    index is made on x's device. The meta device stands in for a GPU (shapes only, no data)."""
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell="gru", pooling=pooling, impl="padded"
    ).to("meta")
    out = encoder(torch.zeros(3, 5, FEATURES, device="meta"), torch.tensor([5, 2, 4]))
    assert out.device.type == "meta"
    assert out.shape == ((3, 5, 2 * HIDDEN) if pooling == "none" else (3, 2 * HIDDEN))
    if pooling != "last":  # the packed path's pooling, which gets the lengths as given
        steps = torch.zeros(3, 5, 2 * HIDDEN, device="meta")
        assert encoder._pool_steps(steps, torch.tensor([5, 2, 4])).shape == out.shape


def test_the_packed_path_keeps_every_step_of_the_padded_batch():
    """pooling=none gives the batch's full time axis even when every sequence is shorter."""
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="gru", pooling="none", impl="packed")
    with torch.no_grad():
        out = encoder(torch.randn(2, 6, FEATURES), torch.tensor([3, 4]))
    assert out.shape == (2, 6, 2 * HIDDEN)
    assert not out[:, 4:].any() and not out[0, 3:].any()


@pytest.mark.parametrize(("cell", "learned_init"), [("lstm", True), ("gru", True), ("gru", False)])
def test_each_direction_gets_its_own_one_layer_initial_state(monkeypatch, cell, learned_init):
    """The fused kernel runs one layer and direction: its initial state is that one's row of
    h0 (and c0), shape (1, batch, hidden); without a learned state, zeros."""
    from rnnlab.models import layerwise as module

    seen: list[tuple[torch.Tensor, ...]] = []
    kernel = module.KERNELS[cell]

    def recording(inputs: torch.Tensor, hx: Any, *rest: Any) -> Any:
        seen.append(tuple(hx) if isinstance(hx, tuple) else (hx,))
        return kernel(inputs, hx, *rest)

    monkeypatch.setitem(module.KERNELS, cell, recording)
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell=cell, learned_init=learned_init, impl="padded"
    )
    if learned_init:
        with torch.no_grad():
            for state in (encoder.h0, encoder.c0):
                if state is not None:
                    state.copy_(torch.arange(4.0).reshape(4, 1, 1).expand_as(state))
    with torch.no_grad():
        encoder(torch.randn(3, 5, FEATURES), torch.tensor([5, 2, 4]))
    assert len(seen) == 4  # two layers, two directions
    for index, states in enumerate(seen):
        assert len(states) == (2 if cell == "lstm" else 1)
        for state in states:
            assert state.shape == (1, 3, HIDDEN)
            assert torch.equal(state, torch.full_like(state, index if learned_init else 0.0))


def test_only_the_kernels_warning_about_non_contiguous_weights_is_silenced(monkeypatch):
    """cuDNN warns on every call that one direction's weights are a view into the module's
    flat buffer (expected here); any other warning of the kernel still shows."""
    from rnnlab.models import layerwise as module

    kernel = module.KERNELS["gru"]

    def warning(inputs: torch.Tensor, *rest: Any) -> Any:
        message = "RNN module weights are not part of single contiguous chunk of memory"
        warnings.warn(message, UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        return kernel(inputs, *rest)

    monkeypatch.setitem(module.KERNELS, "gru", warning)
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="gru", bidirectional=False, impl="padded")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder(torch.randn(2, 3, FEATURES), torch.tensor([3, 2]))
    assert [str(w.message) for w in caught] == ["something else"]


@pytest.mark.parametrize(
    ("num_layers", "dropout", "calls"), [(3, 0.5, 2), (2, 0.0, 0), (1, 0.5, 0)]
)
def test_padded_dropout_acts_between_layers_only(monkeypatch, num_layers, dropout, calls):
    drawn: list[float] = []
    original = torch.nn.functional.dropout

    def counting(inputs: torch.Tensor, p: float = 0.5, *args: Any, **kwargs: Any) -> Any:
        drawn.append(p)
        return original(inputs, p, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "dropout", counting)
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=num_layers, dropout=dropout, impl="padded"
    ).train()
    encoder(torch.randn(2, 4, FEATURES), torch.tensor([4, 3]))
    assert drawn == [dropout] * calls


def test_defaults():
    encoder = RNNEncoder(FEATURES, num_layers=2)
    assert encoder.hidden_size == 64 and encoder.rnn.dropout == 0.0
    assert isinstance(encoder.rnn, torch.nn.LSTM) and encoder.num_directions == 2
    assert (encoder.pooling, encoder.impl, encoder.h0) == ("max", "auto", None)


def test_forward_takes_the_path_uses_padded_picks_for_the_batchs_lengths(monkeypatch):
    encoder = RNNEncoder(FEATURES, HIDDEN, impl="auto")
    taken: list[str] = []
    for path in ("_forward_packed", "_forward_padded"):
        original = getattr(encoder, path)

        def recording(*args: Any, _path: str = path, _original: Any = original) -> Any:
            taken.append(_path)
            return _original(*args)

        monkeypatch.setattr(encoder, path, recording)
    x, skewed = torch.randn(4, 8, FEATURES), torch.tensor([8, 1, 1, 1])
    with torch.no_grad():  # CPU inference of a batch mostly padding: packed
        encoder(x, skewed)
    encoder(x, skewed)  # training: padded
    assert taken == ["_forward_packed", "_forward_padded"]

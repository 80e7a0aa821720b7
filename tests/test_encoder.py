"""The RNN details that must be right: padding, packing, directions, pooling, init."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pad_sequence

from rnnlab.models.encoder import CELLS, POOLINGS, RNNEncoder
from rnnlab.utils.errors import ConfigError

FEATURES, HIDDEN = 3, 5


def _sequences(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, FEATURES, generator=generator) for n in lengths]


# every cell, and the vanilla RNN with each nonlinearity
CELL_VARIANTS = [(cell, None) for cell in CELLS] + [("rnn", "relu")]


@pytest.mark.parametrize(
    ("cell", "nonlinearity", "bidirectional", "pooling"),
    [(*cell, *rest) for cell, *rest in itertools.product(CELL_VARIANTS, [False, True], POOLINGS)],
)
def test_padded_batch_equals_each_sequence_alone(
    cell: str, nonlinearity: str | None, bidirectional: bool, pooling: str
):
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES,
        HIDDEN,
        num_layers=2,
        cell=cell,
        bidirectional=bidirectional,
        pooling=pooling,
        learned_init=True,
        nonlinearity=nonlinearity,
    ).eval()
    with torch.no_grad():  # a non-zero learned initial state must reach every sequence too
        encoder.h0.normal_()
    # unsorted lengths, the longest not first, one of length 1
    sequences = _sequences([4, 9, 1, 6])
    lengths = torch.tensor([len(s) for s in sequences])
    padded = pad_sequence(sequences, batch_first=True, padding_value=7.0)  # loud padding
    with torch.no_grad():
        batched = encoder(padded, lengths)
        alone = [encoder(s[None], torch.tensor([len(s)]))[0] for s in sequences]
    width = HIDDEN * (2 if bidirectional else 1)
    if pooling == "none":  # every step: the valid ones equal the sequence's own, padding is 0
        assert batched.shape == (4, 9, width)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(batched[i, :n], alone[i], rtol=1e-5, atol=1e-6)
            assert not batched[i, n:].any()
        return
    assert batched.shape == (4, width)
    torch.testing.assert_close(batched, torch.stack(alone), rtol=1e-5, atol=1e-6)


def test_last_pooling_reads_last_valid_step_and_full_backward_pass():
    """Forward half = output at the last valid step; backward half = backward output at t=0
    (the state after reading the whole sequence), not the padded out[:, -1]."""
    torch.manual_seed(1)
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="gru", bidirectional=True, pooling="last").eval()
    sequences = _sequences([3, 8])
    padded = pad_sequence(sequences, batch_first=True)
    with torch.no_grad():
        pooled = encoder(padded, torch.tensor([3, 8]))
        for i, seq in enumerate(sequences):
            out, _ = encoder.rnn(seq[None])
            torch.testing.assert_close(pooled[i, :HIDDEN], out[0, -1, :HIDDEN])
            torch.testing.assert_close(pooled[i, HIDDEN:], out[0, 0, HIDDEN:])
        naive, _ = encoder.rnn(padded)
    # The short sequence's out[:, -1] has read padding: it must differ from what we pool.
    assert not torch.allclose(pooled[0], naive[0, -1])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_h_n_layout_is_layers_times_directions_first(cell: str, bidirectional: bool):
    encoder = RNNEncoder(FEATURES, HIDDEN, num_layers=3, cell=cell, bidirectional=bidirectional)
    _, state = encoder.rnn(torch.randn(2, 5, FEATURES))
    h_n = state[0] if isinstance(state, tuple) else state
    assert h_n.shape == (3 * (2 if bidirectional else 1), 2, HIDDEN)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_orthogonal_init_sets_lstm_forget_bias_to_one_in_total(bidirectional: bool):
    encoder = RNNEncoder(
        FEATURES, HIDDEN, num_layers=2, cell="lstm", bidirectional=bidirectional, init="orthogonal"
    )
    params = dict(encoder.rnn.named_parameters())
    suffixes = [
        f"_l{layer}{d}" for layer in range(2) for d in ([""] + ["_reverse"] * bidirectional)
    ]
    for suffix in suffixes:
        total = params["bias_ih" + suffix] + params["bias_hh" + suffix]  # PyTorch adds the two
        forget = slice(HIDDEN, 2 * HIDDEN)  # gate order i, f, g, o
        torch.testing.assert_close(total[forget], torch.ones(HIDDEN))
        others = torch.cat([total[:HIDDEN], total[2 * HIDDEN :]])
        torch.testing.assert_close(others, torch.zeros(3 * HIDDEN))
        for gate in params["weight_hh" + suffix].detach().split(HIDDEN):
            torch.testing.assert_close(gate @ gate.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)


def test_learned_initial_state_receives_gradient():
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="lstm", learned_init=True)
    sequences = _sequences([2, 5])
    encoder(pad_sequence(sequences, batch_first=True), torch.tensor([2, 5])).sum().backward()
    assert encoder.h0.grad is not None and encoder.h0.grad.abs().sum() > 0
    assert encoder.c0.grad is not None and encoder.c0.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "unknown cell"),
        ({"pooling": "first"}, "unknown pooling"),
        ({"init": "he"}, "unknown init"),
    ],
)
def test_bad_choices_name_the_option_and_the_fix(kwargs: dict, message: str):
    with pytest.raises(ConfigError, match=message) as info:
        RNNEncoder(FEATURES, HIDDEN, **kwargs)
    assert "model.encoder." in str(info.value)


def _outputs_and_gradients(
    encoder: RNNEncoder, x: torch.Tensor, lengths: torch.Tensor, impl: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    encoder.impl = impl
    encoder.zero_grad()
    x = x.clone().requires_grad_(True)
    out = encoder(x, lengths)
    # a weighting that differs per output unit, so no gradient cancels by symmetry
    (out * torch.linspace(-1, 2, out.shape[-1], device=out.device)).sum().backward()
    grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
    assert x.grad is not None
    return out.detach(), grads, x.grad


PATH_CASES = {
    "cell": st.sampled_from(sorted(CELLS)),
    "nonlinearity": st.sampled_from([None, "tanh", "relu"]),  # for cell=rnn; others get None
    "bidirectional": st.booleans(),
    "pooling": st.sampled_from(POOLINGS),
    "num_layers": st.integers(1, 3),
    "learned_init": st.booleans(),
    "lengths": st.lists(st.integers(1, 9), min_size=1, max_size=6),
    "padding": st.sampled_from([0.0, 1e6, float("nan")]),
    "seed": st.integers(0, 2**16),
}


def _encoder(config: dict) -> RNNEncoder:
    if config["cell"] != "rnn":  # a gated cell refuses a nonlinearity (tested below)
        config = {**config, "nonlinearity": None}
    return RNNEncoder(FEATURES, HIDDEN, **config)


def _paths_agree(
    device: str,
    padding: float,
    lengths: list[int],
    seed: int,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    **config,
) -> None:
    torch.manual_seed(seed)
    # training mode (cuDNN has no backward in eval mode) without dropout: the two paths would
    # draw different dropout masks
    encoder = _encoder(config).train().to(device)
    if config["learned_init"]:
        with torch.no_grad():
            for state in (encoder.h0, encoder.c0):
                if state is not None:
                    state.normal_()
    sequences = [s.to(device) for s in _sequences(lengths, seed)]
    x = pad_sequence(sequences, batch_first=True, padding_value=padding)
    size = torch.tensor(lengths)
    packed = _outputs_and_gradients(encoder, x, size, "packed")
    padded = _outputs_and_gradients(encoder, x, size, "padded")
    zero_padded = _outputs_and_gradients(
        encoder, pad_sequence(sequences, batch_first=True), size, "padded"
    )
    torch.testing.assert_close(padded[0], packed[0], rtol=rtol, atol=atol)
    assert padded[1].keys() == packed[1].keys()
    for name in packed[1]:
        torch.testing.assert_close(padded[1][name], packed[1][name], rtol=rtol, atol=atol)
    valid = (torch.arange(x.shape[1])[None, :, None] < size[:, None, None]).to(device)
    torch.testing.assert_close(padded[2] * valid, packed[2] * valid, rtol=rtol, atol=atol)
    assert not padded[2][~valid.expand_as(padded[2])].any()  # padding gets no gradient
    torch.testing.assert_close(padded[0], zero_padded[0], rtol=0, atol=0)
    for name in packed[1]:
        torch.testing.assert_close(padded[1][name], zero_padded[1][name], rtol=0, atol=0)


@settings(max_examples=80, deadline=None)
@given(**PATH_CASES)
def test_padded_path_equals_packed_outputs_and_gradients(**case):
    """Outputs, parameter gradients and input gradients of impl=padded equal impl=packed for any
    lengths (1, all equal, unsorted), cell, direction, depth, pooling and initial state; and
    the padding value (0, 1e6, NaN) changes nothing."""
    _paths_agree("cpu", **case)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@settings(max_examples=60, deadline=None)
@given(**PATH_CASES)
def test_padded_path_equals_packed_on_cuda(**case):
    """The same on CUDA, where packed runs cuDNN's packed kernels (TF32 off: float32 throughout).
    cuDNN sums weight gradients over steps and batch in another order per path; on an H100 a
    weight gradient differed by 1.5e-5 at worst (outputs within 1e-5): tolerance 1e-4."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    _paths_agree("cuda", rtol=1e-4, atol=1e-4, **case)


def test_auto_picks_the_padded_path_where_it_was_measured_faster():
    encoder = RNNEncoder(FEATURES, HIDDEN, impl="auto")
    assert encoder.uses_padded(torch.device("cpu")) and encoder.uses_padded(torch.device("cuda"))
    assert not encoder.uses_padded(torch.device("mps"))
    skewed, even = torch.tensor([40, 3, 2, 1]), torch.tensor([9, 8, 7, 9])
    with torch.no_grad():  # CPU inference: packing once padding is more than half the batch
        assert not encoder.uses_padded(torch.device("cpu"), skewed)
        assert encoder.uses_padded(torch.device("cpu"), even)
        assert encoder.uses_padded(torch.device("cuda"), skewed)
    assert encoder.uses_padded(torch.device("cpu"), skewed)  # training: padded
    assert RNNEncoder(FEATURES, HIDDEN, impl="packed").uses_padded(torch.device("cpu")) is False
    with pytest.raises(ConfigError, match="unknown impl 'fast'"):
        RNNEncoder(FEATURES, HIDDEN, impl="fast")


def test_dropout_between_layers_acts_in_training_only_on_both_paths():
    torch.manual_seed(0)
    encoder = RNNEncoder(FEATURES, HIDDEN, num_layers=2, dropout=0.5, pooling="mean")
    x = pad_sequence(_sequences([5, 3, 7]), batch_first=True)
    lengths = torch.tensor([5, 3, 7])
    for impl in ("packed", "padded"):
        encoder.impl = impl
        encoder.train()
        first, second = encoder(x, lengths), encoder(x, lengths)
        assert not torch.allclose(first, second)  # masks drawn anew
        encoder.eval()
        torch.testing.assert_close(encoder(x, lengths), encoder(x, lengths))
    encoder.impl = "packed"
    packed = encoder(x, lengths)
    encoder.impl = "padded"
    torch.testing.assert_close(encoder(x, lengths), packed, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(**PATH_CASES)
def test_unrolled_recording_path_equals_the_fused_kernels(**case):
    """The step-by-step path the diagnostics record h_t from computes what the fused kernels
    compute: outputs, parameter and input gradients; and it records every layer and direction,
    each state of the batch's full padded length."""
    padding, lengths, seed = case.pop("padding"), case.pop("lengths"), case.pop("seed")
    torch.manual_seed(seed)
    encoder = _encoder(case).train()
    x = pad_sequence(_sequences(lengths, seed), batch_first=True, padding_value=padding)
    size = torch.tensor(lengths)
    fused = _outputs_and_gradients(encoder, x, size, "padded")
    encoder.recorded = []
    unrolled = _outputs_and_gradients(encoder, x, size, "padded")
    recorded, encoder.recorded = encoder.recorded, None
    torch.testing.assert_close(unrolled[0], fused[0], rtol=1e-5, atol=1e-5)
    for name in fused[1]:
        torch.testing.assert_close(unrolled[1][name], fused[1][name], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unrolled[2], fused[2], rtol=1e-5, atol=1e-5)
    directions = encoder.num_directions
    assert [(layer, d) for layer, d, _ in recorded] == [
        (layer, d) for layer in range(case["num_layers"]) for d in range(directions)
    ]
    assert all(len(states) == x.shape[1] for _, _, states in recorded)


def test_recorded_state_gradients_follow_the_tanh_recursion():
    """For a tanh RNN read at its last step, dL/dh_t = W_hh^T diag(1 - h_{t+1}^2) dL/dh_{t+1}:
    the recorded states carry the whole gradient through time, not just the direct part."""
    torch.manual_seed(3)
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="rnn", bidirectional=False, pooling="last")
    x = torch.randn(2, 6, FEATURES)
    encoder.recorded = []
    loss = (encoder(x, torch.tensor([6, 6])) ** 2).sum()
    (_, _, states), encoder.recorded = encoder.recorded[0], None
    grads = torch.autograd.grad(loss, states)
    weight = encoder.rnn.weight_hh_l0.detach()
    for t in range(5):
        expected = (grads[t + 1] * (1 - states[t + 1].detach() ** 2)) @ weight
        torch.testing.assert_close(grads[t], expected)
    assert grads[0].abs().sum() > 0  # reaches the first step


def test_relu_rnn_and_irnn_init():
    """nonlinearity=relu reaches both paths; irnn sets identity recurrent weights, zero biases
    and small input weights (Le et al. 2015)."""
    encoder = RNNEncoder(FEATURES, HIDDEN, cell="rnn", nonlinearity="relu", init="irnn")
    assert encoder.rnn.nonlinearity == "relu"
    for name, param in encoder.rnn.named_parameters():
        if name.startswith("weight_hh"):
            torch.testing.assert_close(param.detach(), torch.eye(HIDDEN))
        elif name.startswith("bias"):
            assert not param.any()
        else:
            assert 0 < param.std() < 0.01
    x, lengths = torch.randn(2, 4, FEATURES), torch.tensor([4, 2])
    with torch.no_grad():
        assert (encoder(x, lengths) >= 0).all()  # a ReLU state is never negative


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "lstm", "nonlinearity": "relu"}, "nonlinearity=relu applies to cell=rnn only"),
        ({"cell": "gru", "nonlinearity": "tanh"}, "nonlinearity=tanh applies to cell=rnn only"),
        ({"cell": "gru", "init": "irnn"}, "init=irnn .* is for cell=rnn only"),
        ({"cell": "rnn", "nonlinearity": "sigmoid"}, "unknown nonlinearity 'sigmoid'"),
    ],
)
def test_knobs_of_the_vanilla_rnn_refuse_gated_cells(kwargs: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        RNNEncoder(FEATURES, HIDDEN, **kwargs)

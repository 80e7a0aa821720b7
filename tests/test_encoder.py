"""The RNN details that must be right: padding, packing, directions, pooling, init."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from rnnlab.models.encoder import CELLS, POOLINGS, RNNEncoder
from rnnlab.utils.errors import ConfigError

FEATURES, HIDDEN = 3, 5


def _sequences(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, FEATURES, generator=generator) for n in lengths]


@pytest.mark.parametrize(
    ("cell", "bidirectional", "pooling"),
    list(itertools.product(CELLS, [False, True], POOLINGS)),
)
def test_padded_batch_equals_each_sequence_alone(cell: str, bidirectional: bool, pooling: str):
    torch.manual_seed(0)
    encoder = RNNEncoder(
        FEATURES,
        HIDDEN,
        num_layers=2,
        cell=cell,
        bidirectional=bidirectional,
        pooling=pooling,
        learned_init=True,
    ).eval()
    with torch.no_grad():  # a non-zero learned initial state must reach every sequence too
        encoder.h0.normal_()
    # unsorted lengths, the longest not first, one of length 1
    sequences = _sequences([4, 9, 1, 6])
    lengths = torch.tensor([len(s) for s in sequences])
    padded = pad_sequence(sequences, batch_first=True, padding_value=7.0)  # loud padding
    with torch.no_grad():
        batched = encoder(padded, lengths)
        alone = torch.cat([encoder(s[None], torch.tensor([len(s)])) for s in sequences])
    assert batched.shape == (4, HIDDEN * (2 if bidirectional else 1))
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


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

"""The recurrent encoder one layer at a time, for training with variational dropout or weight
drop (``rnnlab.models.regularisers``): a mask between two layers, or a dropped ``weight_hh``,
cannot be handed to the multi-layer kernel ``nn.LSTM`` calls. Each layer still runs in the fused
kernel over the whole sequence: the packed path on the packed rows (both directions in one call),
``sequence`` (language models) with the state of each layer carried in and out. And one layer
and direction one step at a time, for the diagnostics that record every hidden state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.models.regularisers import Masks

if TYPE_CHECKING:
    from rnnlab.models.encoder import RNNEncoder, State

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# The fused kernels nn.RNN/LSTM/GRU call themselves, run here one layer (and direction) at a time.
KERNELS: dict[str, Callable[..., Any]] = {
    "rnn": torch.rnn_tanh,
    "lstm": torch.lstm,
    "gru": torch.gru,
}
# One step of each cell, for the unrolled path that diagnostics record hidden states from.
CELL_STEPS: dict[str, Callable[..., Any]] = {
    "rnn": torch.rnn_tanh_cell,
    "rnn_relu": torch.rnn_relu_cell,
    "lstm": torch.lstm_cell,
    "gru": torch.gru_cell,
}


def layer_weights(
    encoder: RNNEncoder, layer: int, direction: int, masks: Masks
) -> list[torch.Tensor]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction, ``weight_hh``
    dropped where ``masks`` has it."""
    suffix = f"l{layer}" + ("_reverse" if direction else "")
    weights = [getattr(encoder.rnn, f"{name}_{suffix}") for name in WEIGHT_NAMES]
    dropped = masks.weight_hh.get((layer, direction))
    if dropped is not None:
        weights[1] = dropped
    return weights


def _state_of(encoder: RNNEncoder, batch: int, like: torch.Tensor) -> Any:
    """The initial state (layers * directions, batch, hidden): learned or zeros."""
    state = encoder._initial_state(batch)
    if state is not None:
        return state
    shape = (encoder.num_layers * encoder.num_directions, batch, encoder.hidden_size)
    zeros = like.new_zeros(shape)
    return (zeros, zeros) if encoder.cell == "lstm" else zeros


def _slice(state: Any, start: int, stop: int, order: torch.Tensor | None = None) -> Any:
    """Entries ``start:stop`` of a state's first axis (its batch reordered by ``order``)."""
    parts = state if isinstance(state, tuple) else (state,)
    cut = [p[start:stop] if order is None else p[start:stop].index_select(1, order) for p in parts]
    return tuple(cut) if isinstance(state, tuple) else cut[0]


def kernel_of(encoder: RNNEncoder) -> Any:
    """The fused kernel of ``encoder``'s cell (and nonlinearity)."""
    return torch.rnn_relu if encoder.nonlinearity == "relu" else KERNELS[encoder.cell]


def forward_packed(
    encoder: RNNEncoder, x: torch.Tensor, lengths: torch.Tensor, masks: Masks
) -> torch.Tensor:
    """``encoder.forward`` by the packed path, layer by layer, with ``masks`` applied."""
    batch, total = x.shape[:2]
    packed = pack_padded_sequence(
        masks.locked(x, masks.input), lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    assert packed.sorted_indices is not None and packed.unsorted_indices is not None
    # the sequence (in the batch) each packed row belongs to: rows come step by step, each step
    # holding the first batch_sizes[t] sequences in sorted order
    rank = torch.cat([torch.arange(int(size)) for size in packed.batch_sizes])
    row_sequence = packed.sorted_indices[rank.to(packed.sorted_indices.device)]
    data, state = packed.data, _state_of(encoder, batch, x)
    directions, bidirectional = encoder.num_directions, encoder.num_directions == 2
    last: list[torch.Tensor] = []
    for layer in range(encoder.num_layers):
        if layer in masks.between:
            data = data * masks.between[layer][row_sequence]
        weights = [w for d in range(directions) for w in layer_weights(encoder, layer, d, masks)]
        hx = _slice(state, layer * directions, (layer + 1) * directions, packed.sorted_indices)
        result = kernel_of(encoder)(
            data, packed.batch_sizes, hx, weights, True, 1, 0.0, True, bidirectional
        )
        data, last = result[0], [result[1]]
    if encoder.pooling == "last":
        # the top layer's final states: forward at each sequence's last step, backward at t=0
        top = last[0].index_select(1, packed.unsorted_indices)
        pooled = top.transpose(0, 1).reshape(batch, encoder.output_size)
        return pooled if masks.output is None else pooled * masks.output
    out_packed = packed._replace(data=data)
    out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=total)
    return encoder._pool_steps(masks.locked(out, masks.output), lengths)


def sequence(
    encoder: RNNEncoder, x: torch.Tensor, state: State | None, masks: Masks
) -> tuple[torch.Tensor, State]:
    """``encoder.sequence`` (left to right, every step valid) layer by layer with ``masks``."""
    if state is None:
        state = _state_of(encoder, x.shape[0], x)
    inputs = masks.locked(x, masks.input)
    finals: list[tuple[torch.Tensor, ...]] = []
    for layer in range(encoder.num_layers):
        if layer in masks.between:
            inputs = masks.locked(inputs, masks.between[layer])
        hx = _slice(state, layer, layer + 1)
        weights = layer_weights(encoder, layer, 0, masks)
        result = kernel_of(encoder)(inputs, hx, weights, True, 1, 0.0, True, False, True)
        inputs, finals = result[0], [*finals, result[1:]]
    after: State
    if encoder.cell == "lstm":
        after = (torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals]))
    else:
        after = torch.cat([f[0] for f in finals])
    return masks.locked(inputs, masks.output), after


def direction_unrolled(
    encoder: RNNEncoder,
    inputs: torch.Tensor,
    layer: int,
    direction: int,
    hx: Any,
    weights: list[torch.Tensor],
) -> torch.Tensor:
    """One layer and direction of the padded path one step at a time, each state its own tensor
    in the graph, recorded in ``encoder.recorded``: the gradient of a loss with respect to a
    recorded h_t is the whole of dL/dh_t, through every later step (a fused kernel's outputs
    would give only the direct part). Same outputs and gradients as the kernel, slower."""
    assert encoder.recorded is not None
    step_fn = CELL_STEPS["rnn_relu" if encoder.nonlinearity == "relu" else encoder.cell]
    state = tuple(h[0] for h in hx) if isinstance(hx, tuple) else hx[0]
    states = []
    for t in range(inputs.shape[1]):
        state = step_fn(inputs[:, t], state, *weights)
        states.append(state[0] if isinstance(state, tuple) else state)
    encoder.recorded.append((layer, direction, states))
    return torch.stack(states, dim=1)

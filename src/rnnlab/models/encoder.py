"""Recurrent sequence encoder: padded batch + lengths in, one vector per sequence out; and what
any encoder of the sequence-level models must be (``SequenceEncoder``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.models import layerwise
from rnnlab.models.regularisers import Masks, Regularisers, draw_masks
from rnnlab.utils.errors import ConfigError, choice

CELLS: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# "none": every step's output (batch, time, output_size), padding zeroed, for per-step heads
POOLINGS = ("last", "mean", "max", "none")
INITS = ("default", "orthogonal", "irnn")
NONLINEARITIES = ("tanh", "relu")  # of the vanilla RNN only
IMPLS = ("auto", "packed", "padded")
# a recurrent state: h, or (h, c) for an LSTM; each (layers * directions, batch, hidden)
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _choice(kind: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    return choice(value, allowed, f"model.encoder.{kind}", kind)


class SequenceEncoder(Protocol):
    """What the sequence-level models (classifier, regressor, forecaster) take as ``encoder``
    (``model.encoder._target_``): a module from a padded batch ``x`` (batch, time, features) and
    its valid ``lengths`` to one vector of ``output_size`` per sequence, such as ``RNNEncoder``
    or ``lstm_fcn.LSTMFCNEncoder``. A ``display_name()`` names it in logs and figure titles
    (``rnnlab.capabilities.Described``); without one its class's name does."""

    output_size: int

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...


class RNNEncoder(nn.Module):
    """Runs an RNN/LSTM/GRU over a padded batch and pools each sequence to one vector.

    Padding never reaches a valid step, so results equal running each sequence alone, by one of
    two paths (``impl``) that give the same outputs and gradients:

    - ``packed``: the batch is packed inside ``forward`` (``pack_padded_sequence``). cuDNN runs
      packed input fast; on the CPU PyTorch runs it as a per-step loop.
    - ``padded``: the recurrence runs over the padded tensor, where the CPU uses its fused
      kernel. Padding is zeroed and trails every sequence, so the forward direction's valid
      steps never see it; the backward direction reads each sequence reversed within its own
      length (an index gather, undone on its outputs), so its padding trails too. Bidirectional
      stacks run layer by layer (each layer reads both directions of the one below).
    - ``auto``: ``padded`` on the CPU and on CUDA, where it was measured faster than packing
      (``scripts/bench/encoder_paths.py``: training 1.2-3.7x on the CPU, 0.9-10x on an H100,
      at up to 5x the GPU memory on skewed lengths, where ``packed`` is the memory-lean
      choice), except CPU inference of batches more than half padding, where packing was
      faster; ``packed`` on other devices, where it was not measured.

    In training, variational dropout and weight drop (``rnnlab.models.regularisers``, off by
    default) run the layers one at a time, on either path (``rnnlab.models.layerwise``).

    ``output_size`` is ``hidden_size * num_directions``. The defaults are those of
    ``conf/model/encoder/rnn.yaml`` (a test keeps them equal).
    """

    # settings that size the weights: a checkpoint's are checked against its weights before
    # it is built (rnnlab.checkpoint.weights)
    size_settings: ClassVar[tuple[str, ...]] = ("input_size", "hidden_size", "num_layers")

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        pooling: str = "max",
        learned_init: bool = False,
        init: str = "orthogonal",
        impl: str = "auto",
        nonlinearity: str | None = None,
        locked_input_dropout: float = 0.0,
        locked_layer_dropout: float = 0.0,
        locked_output_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.regularisers = Regularisers(
            locked_input_dropout, locked_layer_dropout, locked_output_dropout, weight_drop
        )
        self.regularisers.check(num_layers, dropout)
        self.cell = _choice("cell", cell, list(CELLS))
        self.pooling = _choice("pooling", pooling, POOLINGS)
        self.impl = _choice("impl", impl, IMPLS)
        _choice("init", init, INITS)
        if nonlinearity is not None and cell != "rnn":
            raise ConfigError(
                f"model.encoder.nonlinearity={nonlinearity} applies to cell=rnn only; the "
                f"gates of cell={cell} fix its nonlinearities: set it to null"
            )
        if init == "irnn" and cell != "rnn":
            raise ConfigError(
                f"model.encoder.init=irnn (identity recurrent weights) is for cell=rnn only, "
                f"not the gated cell={cell}: use init=orthogonal or init=default"
            )
        self.nonlinearity = _choice("nonlinearity", nonlinearity or "tanh", NONLINEARITIES)
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ConfigError(
                f"input_size, hidden_size and num_layers must be >= 1, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        # nn.RNNBase warns (and does nothing) for dropout with a single layer.
        self.rnn = CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **({"nonlinearity": self.nonlinearity} if cell == "rnn" else {}),
        )
        # a list while diagnostics record: (layer, direction, [h_t per step]) from the unrolled
        # path (``_direction_unrolled``); None in training
        self.recorded: list[tuple[int, int, list[torch.Tensor]]] | None = None
        state_shape = (num_layers * self.num_directions, 1, hidden_size)
        self.h0: nn.Parameter | None
        self.c0: nn.Parameter | None
        if learned_init:
            self.h0 = nn.Parameter(torch.zeros(state_shape))
            self.c0 = nn.Parameter(torch.zeros(state_shape)) if cell == "lstm" else None
        else:
            self.h0 = self.c0 = None
        if init == "orthogonal":
            self.reset_orthogonal()
        elif init == "irnn":
            self.reset_irnn()

    @torch.no_grad()
    def reset_orthogonal(self) -> None:
        """Orthogonal recurrent weights per gate, Xavier input weights, zero biases.

        For LSTM the forget gate is biased to 1 so gradients flow through long sequences early in
        training. PyTorch adds ``bias_ih`` and ``bias_hh``; gate order is (i, f, g, o), so the
        forget slice is ``[H:2H]`` and only one of the two biases carries the 1.
        """
        hidden = self.hidden_size
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_hh"):
                for gate in param.split(hidden, dim=0):
                    nn.init.orthogonal_(gate)
            elif name.startswith("weight_ih"):
                for gate in param.split(hidden, dim=0):
                    nn.init.xavier_uniform_(gate)
            elif name.startswith("bias"):
                param.zero_()
                if self.cell == "lstm" and name.startswith("bias_ih"):
                    param[hidden : 2 * hidden] = 1.0

    def _initial_state(self, batch: int) -> State | None:
        if self.h0 is None:
            return None
        h0 = self.h0.expand(-1, batch, -1).contiguous()
        if self.c0 is None:
            return h0
        return h0, self.c0.expand(-1, batch, -1).contiguous()

    def uses_padded(self, device: torch.device, lengths: torch.Tensor | None = None) -> bool:
        """Whether ``forward`` takes the padded path for a batch on ``device``."""
        if self.impl != "auto":
            return self.impl == "padded"
        if device.type not in ("cpu", "cuda"):
            return False
        if device.type == "cpu" and lengths is not None and not torch.is_grad_enabled():
            # without a backward pass to save, packing wins on the CPU once padding is more
            # than half the batch (scripts/bench/encoder_paths.py, inference rows)
            return 2 * int(lengths.sum()) >= len(lengths) * int(lengths.max())
        return True

    def display_name(self) -> str:
        """This encoder in a few words ('BiLSTM, 64 units'; '2-layer GRU, 32 units')."""
        depth = f"{self.num_layers}-layer " if self.num_layers > 1 else ""
        bi = "Bi" if self.num_directions == 2 else ""
        return f"{depth}{bi}{self.cell.upper()}, {self.hidden_size} units"

    def _masks(self, x: torch.Tensor) -> Masks | None:
        """This forward pass's variational dropout masks and dropped weights (None: none)."""
        if not (self.training and self.regularisers.active):
            return None
        weight_hh = {
            (layer, direction): getattr(self.rnn, f"weight_hh_l{layer}{'_reverse' * direction}")
            for layer in range(self.num_layers)
            for direction in range(self.num_directions)
        }
        return draw_masks(self.regularisers, x, x.shape[-1], self.output_size, weight_hh)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` of shape (batch, time, features) with valid ``lengths`` (batch,)."""
        masks = self._masks(x)
        if self.uses_padded(x.device, lengths):
            return self._forward_padded(x, lengths, masks)
        if masks is not None:
            return layerwise.forward_packed(self, x, lengths, masks)
        return self._forward_packed(x, lengths)

    def sequence(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Every step's top-layer output (batch, time, hidden) over ``x`` (batch, time, features),
        all steps valid, starting from ``state`` (None: the initial state), and the state after
        the last step, to carry into the next window of the same streams. Reads left to right
        only: a bidirectional encoder is refused."""
        if self.num_directions != 1:
            raise ConfigError(
                "a bidirectional encoder reads the future, so it cannot run step by step or "
                "generate; set model.encoder.bidirectional=false"
            )
        masks = self._masks(x)
        if masks is not None:
            return layerwise.sequence(self, x, state, masks)
        if state is None:
            state = self._initial_state(x.shape[0])
        return self.rnn(x, state)

    def step(self, x_t: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One step: input (batch, features) and the state before it, to the output (batch,
        hidden) and the state after it. Equals ``sequence`` run one step at a time."""
        out, state = self.sequence(x_t.unsqueeze(1), state)
        return out[:, 0], state

    def _forward_packed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, total_length = x.shape[0], x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out_packed, state = self.rnn(packed, self._initial_state(batch))
        if self.pooling == "last":
            h_n = state[0] if isinstance(state, tuple) else state
            # h_n is (layers * directions, batch, hidden) even with batch_first=True. For the
            # forward direction it is the state at each sequence's last valid step; for the
            # backward direction it is the state after reading the whole sequence back to t=0.
            top = h_n.view(self.num_layers, self.num_directions, batch, self.hidden_size)[-1]
            return top.transpose(0, 1).reshape(batch, self.output_size)
        out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=total_length)
        return self._pool_steps(out, lengths)

    def _pool_steps(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean or max of each sequence's valid steps of ``out`` (batch, time, features)."""
        steps = torch.arange(out.shape[1], device=out.device)
        lengths = lengths.to(out.device)
        valid = (steps[None, :] < lengths[:, None]).unsqueeze(-1)
        if self.pooling == "none":
            return out.masked_fill(~valid, 0.0)
        if self.pooling == "mean":
            summed = out.masked_fill(~valid, 0.0).sum(dim=1)
            return summed / lengths.to(dtype=out.dtype)[:, None]
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)

    def _direction(
        self, inputs: torch.Tensor, layer: int, direction: int, h0: Any | None, masks: Masks
    ) -> torch.Tensor:
        """Outputs (batch, time, hidden) of one layer and direction over ``inputs``, by the
        fused kernel the module itself calls, with that direction's weights."""
        weights = layerwise.layer_weights(self, layer, direction, masks)
        batch = inputs.shape[0]
        index = layer * self.num_directions + direction
        if h0 is None:
            zeros = inputs.new_zeros(1, batch, self.hidden_size)
            hx: Any = (zeros, zeros) if self.cell == "lstm" else zeros
        elif isinstance(h0, tuple):
            hx = tuple(h[index : index + 1] for h in h0)
        else:
            hx = h0[index : index + 1]
        if self.recorded is not None:
            return layerwise.direction_unrolled(self, inputs, layer, direction, hx, weights)
        kernel = layerwise.kernel_of(self)
        with warnings.catch_warnings():
            # cuDNN asks for the module's flat weight buffer; one direction's weights are a view
            # into it, which it copies per call (the cost is in scripts/bench/encoder_paths.py)
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            # (input, hx, weights, has_biases, layers, dropout, train, bidirectional, batch_first)
            return kernel(inputs, hx, weights, True, 1, 0.0, self.training, False, True)[0]

    def _forward_padded(
        self, x: torch.Tensor, lengths: torch.Tensor, masks: Masks | None = None
    ) -> torch.Tensor:
        batch, total = x.shape[:2]
        lengths = lengths.to(x.device)
        steps = torch.arange(total, device=x.device)[None, :]
        valid = steps < lengths[:, None]
        # each sequence reversed within its length, padding left in place: its own inverse
        flip = torch.where(valid, lengths[:, None] - 1 - steps, steps).unsqueeze(-1)
        # padding values (a NaN, 1e6) must not reach the arithmetic of any gradient
        masks = masks or Masks()
        inputs = masks.locked(x.masked_fill(~valid.unsqueeze(-1), 0.0), masks.input)
        h0 = self._initial_state(batch)
        for layer in range(self.num_layers):
            if layer in masks.between:
                inputs = masks.locked(inputs, masks.between[layer])
            elif layer > 0 and self.rnn.dropout > 0:
                inputs = nn.functional.dropout(inputs, self.rnn.dropout, self.training)
            outputs = [self._direction(inputs, layer, 0, h0, masks)]
            if self.num_directions == 2:
                reversed_inputs = inputs.gather(1, flip.expand_as(inputs))
                backward = self._direction(reversed_inputs, layer, 1, h0, masks)
                outputs.append(backward.gather(1, flip.expand(-1, -1, self.hidden_size)))
            inputs = torch.cat(outputs, dim=-1)
        out = masks.locked(inputs, masks.output)
        if self.pooling != "last":
            return self._pool_steps(out, lengths)
        # forward direction: its output at each sequence's last valid step; backward direction:
        # its output at t=0, the state after reading the whole sequence (what packed's h_n holds)
        last = out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1]))[:, 0]
        if self.num_directions == 1:
            return last
        return torch.cat([last[:, : self.hidden_size], out[:, 0, self.hidden_size :]], dim=-1)

    @torch.no_grad()
    def reset_irnn(self) -> None:
        """IRNN (Le et al. 2015): identity recurrent weights and zero biases, so at the start a
        ReLU RNN copies its state forward unchanged; input weights drawn from N(0, 0.001^2),
        as in that paper."""
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.eye_(param)
            elif name.startswith("weight_ih"):
                nn.init.normal_(param, std=0.001)
            else:
                param.zero_()

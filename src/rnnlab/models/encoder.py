"""Recurrent sequence encoder: padded batch + lengths in, one vector per sequence out."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.utils.errors import ConfigError

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "max")
INITS = ("default", "orthogonal")


def _choice(kind: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise ConfigError(
            f"unknown {kind} {value!r}; set model.encoder.{kind} to one of {', '.join(allowed)}"
        )
    return value


class RNNEncoder(nn.Module):
    """Runs an RNN/LSTM/GRU over a padded batch and pools each sequence to one vector.

    Padding never reaches the recurrence: the batch is packed inside ``forward``, so results equal
    running each sequence alone. ``output_size`` is ``hidden_size * num_directions``. The
    defaults are those of ``conf/model/encoder/rnn.yaml`` (a test keeps them equal).
    """

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
    ) -> None:
        super().__init__()
        self.cell = _choice("cell", cell, list(CELLS))
        self.pooling = _choice("pooling", pooling, POOLINGS)
        _choice("init", init, INITS)
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
        )
        state_shape = (num_layers * self.num_directions, 1, hidden_size)
        if learned_init:
            self.h0 = nn.Parameter(torch.zeros(state_shape))
            self.c0 = nn.Parameter(torch.zeros(state_shape)) if cell == "lstm" else None
        else:
            self.h0 = self.c0 = None
        if init == "orthogonal":
            self.reset_orthogonal()

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

    def _initial_state(self, batch: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        if self.h0 is None:
            return None
        h0 = self.h0.expand(-1, batch, -1).contiguous()
        if self.c0 is None:
            return h0
        return h0, self.c0.expand(-1, batch, -1).contiguous()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` of shape (batch, time, features) with valid ``lengths`` (batch,)."""
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
        steps = torch.arange(total_length, device=x.device)
        valid = (steps[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
        if self.pooling == "mean":
            summed = out.masked_fill(~valid, 0.0).sum(dim=1)
            return summed / lengths.to(device=x.device, dtype=out.dtype)[:, None]
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)

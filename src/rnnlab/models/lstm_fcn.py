"""LSTM-FCN and MLSTM-FCN (Karim et al. 2017, 2019): a recurrent branch beside a fully
convolutional one, each pooled to a vector per sequence and concatenated, over variable-length
padded batches."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.models.encoder import POOLINGS, RNNEncoder, State
from rnnlab.utils.errors import ConfigError


def valid_steps(lengths: torch.Tensor, total: int, device: torch.device) -> torch.Tensor:
    """(batch, 1, time) mask of each sequence's valid steps, for (batch, channels, time)."""
    steps = torch.arange(total, device=device)
    return (steps[None, :] < lengths.to(device)[:, None]).unsqueeze(1)


def masked_mean(h: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence's mean over its valid steps of ``h`` (batch, channels, time)."""
    summed = torch.where(valid, h, 0.0).sum(dim=-1)
    return summed / lengths.to(device=h.device, dtype=h.dtype)[:, None]


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over (batch, channels, time) whose statistics count valid steps only.

    In training the mean and (biased) variance normalising the batch, and the running estimates
    updated from it, are those of the valid steps pooled over the batch: what ``nn.BatchNorm1d``
    computes on those steps alone, so the padding of a batch never shifts them. Padding steps
    come out as zeros. A batch of a single valid step updates the running variance with its
    biased estimate (0) where ``nn.BatchNorm1d`` refuses it, so a lone last batch cannot stop a run.
    """

    def forward(self, h: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is None:
            valid = torch.ones_like(h[:, :1], dtype=torch.bool)
        # zeroed first: below, padding's values are multiplied by zero gradients (a NaN would
        # make them NaN)
        h = torch.where(valid, h, 0.0)
        if self.training or self.running_mean is None or self.running_var is None:
            count = valid.sum()
            mean = h.sum(dim=(0, 2)) / count
            centered = torch.where(valid, h - mean[:, None], 0.0)
            var = centered.square().sum(dim=(0, 2)) / count
            if self.training and self.running_mean is not None and self.running_var is not None:
                self._update_running(mean.detach(), var.detach(), count)
        else:
            mean, var = self.running_mean, self.running_var
        out = (h - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)
        if self.affine:
            out = out * self.weight[:, None] + self.bias[:, None]
        return torch.where(valid, out, 0.0)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        cumulative = 1.0 / float(self.num_batches_tracked)  # momentum None, as nn.BatchNorm1d
        momentum = cumulative if self.momentum is None else self.momentum
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite (Hu et al. 2018) over time: each channel rescaled by a gate computed
    from the channels' means over each sequence's valid steps."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, h: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return h * self.gate(masked_mean(h, valid, lengths))[:, :, None]


class ConvBlock(nn.Module):
    """Conv1d ("same" padding) -> masked batch norm -> ReLU, optionally squeeze-and-excite.

    Padding is zeroed before the convolution, so its "same" padding sees zeros past each
    sequence's end in a batch exactly as it does on the sequence alone."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, squeeze_excite: bool
    ) -> None:
        super().__init__()
        # no bias: the batch norm's shift takes its place
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, bias=False)
        # "same" padding, the extra zero of an even kernel at the end (as Keras, the papers');
        # padded here, as Conv1d(padding="same") warns of a copy for even kernels
        self.same = ((kernel_size - 1) // 2, kernel_size // 2)
        nn.init.kaiming_uniform_(self.conv.weight, nonlinearity="relu")  # He, as the papers' code
        self.norm = MaskedBatchNorm1d(out_channels)
        self.excite = SqueezeExcite(out_channels) if squeeze_excite else None

    def forward(self, h: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.pad(torch.where(valid, h, 0.0), self.same))
        h = torch.relu(self.norm(h, valid))
        if self.excite is not None:
            h = self.excite(h, valid, lengths)
        return h


class LSTMFCNEncoder(nn.Module):
    """LSTM-FCN / MLSTM-FCN encoder: padded batch + lengths in, one vector per sequence out.

    - the recurrent branch is an ``RNNEncoder`` (every one of its settings, both of its paths)
      reading the sequence over time, then ``branch_dropout`` (the papers: 0.8). The papers'
      "dimension shuffle" (reading the channels as time steps) needs a fixed length, so it is
      not used;
    - the convolutional branch is three Conv1d blocks (``filters`` with ``kernel_sizes``: the
      papers' 128/8, 256/5, 128/3), each batch norm + ReLU, with squeeze-and-excite after the
      first two when ``squeeze_excite`` (MLSTM-FCN), then the mean over valid steps.

    Every step of it counts valid steps only (the batch norms' statistics too), so a padded
    sequence gives what it gives alone, and padding values never reach an output or gradient.
    ``output_size`` is the recurrent branch's plus ``filters[-1]``.
    """

    # settings that size the weights: a checkpoint's are checked against its weights before
    # it is built (rnnlab.checkpoint.weights)
    size_settings: ClassVar[tuple[str, ...]] = (
        "input_size",
        "hidden_size",
        "num_layers",
        "filters",
        "kernel_sizes",
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        learned_init: bool = False,
        init: str = "orthogonal",
        impl: str = "auto",
        nonlinearity: str | None = None,
        locked_input_dropout: float = 0.0,
        locked_layer_dropout: float = 0.0,
        locked_output_dropout: float = 0.0,
        weight_drop: float = 0.0,
        branch_dropout: float = 0.8,
        filters: list[int] | tuple[int, ...] = (128, 256, 128),
        kernel_sizes: list[int] | tuple[int, ...] = (8, 5, 3),
        squeeze_excite: bool = True,
    ) -> None:
        super().__init__()
        if pooling == "none":
            pools = ", ".join(p for p in POOLINGS if p != "none")
            raise ConfigError(
                "model/encoder=lstm_fcn gives one vector per sequence, not one per step: set "
                f"model.encoder.pooling to one of {pools} (per-step models need "
                "model/encoder=rnn)"
            )
        if len(filters) != len(kernel_sizes) or not filters or min(*filters, *kernel_sizes) < 1:
            raise ConfigError(
                f"model.encoder.filters and model.encoder.kernel_sizes must be equally long "
                f"lists of positive sizes, got {list(filters)} and {list(kernel_sizes)}"
            )
        self.rnn_branch = RNNEncoder(
            input_size,
            hidden_size,
            num_layers=num_layers,
            cell=cell,
            bidirectional=bidirectional,
            dropout=dropout,
            pooling=pooling,
            learned_init=learned_init,
            init=init,
            impl=impl,
            nonlinearity=nonlinearity,
            locked_input_dropout=locked_input_dropout,
            locked_layer_dropout=locked_layer_dropout,
            locked_output_dropout=locked_output_dropout,
            weight_drop=weight_drop,
        )
        self.branch_dropout = nn.Dropout(branch_dropout)
        channels = [input_size, *filters]
        # squeeze-and-excite after every block but the last, as MLSTM-FCN
        self.blocks = nn.ModuleList(
            ConvBlock(channels[i], channels[i + 1], k, squeeze_excite and i < len(filters) - 1)
            for i, k in enumerate(kernel_sizes)
        )
        self.pooling = pooling
        self.output_size = self.rnn_branch.output_size + filters[-1]

    def display_name(self) -> str:
        """This encoder in a few words ('LSTM-FCN (LSTM, 64 units)'), for titles and run lines."""
        return f"LSTM-FCN ({self.rnn_branch.display_name()})"

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` of shape (batch, time, features) with valid ``lengths`` (batch,)."""
        recurrent = self.branch_dropout(self.rnn_branch(x, lengths))
        valid = valid_steps(lengths, x.shape[1], x.device)
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h, valid, lengths)
        return torch.cat([recurrent, masked_mean(h, valid, lengths)], dim=-1)

    def sequence(self, x: torch.Tensor, state: State | None = None) -> Any:
        raise ConfigError(_NOT_STEPWISE)

    def step(self, x_t: torch.Tensor, state: State | None = None) -> Any:
        raise ConfigError(_NOT_STEPWISE)


_NOT_STEPWISE = (
    "model/encoder=lstm_fcn convolves and pools whole sequences, so it cannot run step by step "
    "or generate; use model/encoder=rnn"
)

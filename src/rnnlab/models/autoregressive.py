"""The autoregressive decoder (``model.decoder=autoregressive``), DeepAR's way: the RNN reads
the window one step at a time, each step's input holding the previous target value beside the
step's own covariates, and each step's output gives the next value's distribution.

Rows: a window's history gives rows ``[z(t-1), c(t)]`` (the targets moved one step later than
their covariates), then one row per forecast step h, ``[z(origin+h-1), c(origin+h)]``, whose
output is the distribution of ``z(origin+h)``. ``c`` at forecast times comes from the window's
rows ahead where the data gives inputs known in advance (``Batch.future_rows``), otherwise it is
the last observed row's (as the data fills past covariates). Training feeds the true previous
values (teacher forcing: one pass over every row); forecasting feeds its own draws (ancestral
sampling: ``num_samples`` paths, a step at a time), each draw the output's inverse CDF at a
uniform from a generator seeded by the run's seed and the batch, so a forecast is the same on
every run. With ``relative`` every target value is read, and drawn, relative to the last
observed one.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.batch import Batch
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.predictive import Point
from rnnlab.utils.errors import ConfigError

DECODERS = ("direct", "autoregressive")


def check_encoder(encoder: object) -> RNNEncoder:
    """The encoder, if it can run a step at a time (one direction, ``model/encoder=rnn``)."""
    if not isinstance(encoder, RNNEncoder) or encoder.num_directions != 1:
        raise ConfigError(
            "model.decoder=autoregressive steps the RNN through the horizon, so it needs a "
            "one-directional model/encoder=rnn; set model.encoder.bidirectional=false"
        )
    return encoder


class Autoregressive:
    """Rows, teacher-forced parameters and sampled paths for ``output`` with ``targets`` target
    columns over ``horizon`` steps; the RNN (``encoder``) and its per-step ``head`` are the
    model's (passed in, so that they stay the model's submodules)."""

    def __init__(self, output: Point, horizon: int, targets: int, relative: bool) -> None:
        self.output, self.horizon, self.targets, self.relative = output, horizon, targets, relative

    def _parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The history rows ``[z(t-1), c(t)]``, the covariates of the forecast steps (batch,
        horizon, features - targets), and the last observed targets (batch, targets)."""
        x, t = batch.x, self.targets
        history = x[:, : x.shape[1] - batch.future_rows]
        last = history[:, -1, :t]
        if batch.future_rows:
            ahead = x[:, history.shape[1] :, t:]
        else:
            ahead = history[:, -1:, t:].expand(-1, self.horizon, -1)
        rows = torch.cat([history[:, :-1, :t], history[:, 1:, t:]], dim=-1)
        if self.relative:
            rows = torch.cat([rows[..., :t] - last[:, None], rows[..., t:]], dim=-1)
        return rows, ahead, last

    def _parameters(self, head: nn.Module, out: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The output's parameters (batch, steps, targets, width) from RNN outputs (batch,
        steps, hidden), normalised (moved back by the last value with ``relative``)."""
        shape = (*out.shape[:2], self.targets, self.output.width)
        values = self.output.arrange(head(out).view(shape))
        return self.output.moved(values, last) if self.relative else values

    def teacher_forced(
        self, encoder: RNNEncoder, head: nn.Module, batch: Batch, target: torch.Tensor
    ) -> torch.Tensor:
        """The parameters of every forecast step (batch, horizon, targets, width) given the true
        previous values: ``target`` (batch, horizon, targets), normalised."""
        rows, ahead, last = self._parts(batch)
        previous = torch.cat([last[:, None], target[:, :-1]], dim=1)
        if self.relative:
            previous = previous - last[:, None]
        decoder_rows = torch.cat([previous, ahead], dim=-1)
        out, _ = encoder.sequence(torch.cat([rows, decoder_rows], dim=1))
        return self._parameters(head, out[:, -self.horizon :], last)

    def sample(
        self,
        encoder: RNNEncoder,
        head: nn.Module,
        batch: Batch,
        paths: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """``paths`` forecasts of every window drawn step by step (batch, horizon, targets,
        paths), in original units."""
        rows, ahead, last = self._parts(batch)
        scaling = batch.target_scaling()
        size = len(rows)

        def repeated(value: torch.Tensor) -> torch.Tensor:
            return value.repeat_interleave(paths, dim=0)

        _, state = encoder.sequence(repeated(rows))
        last, ahead = repeated(last), repeated(ahead)
        many = type(scaling)(repeated(scaling.shift), repeated(scaling.scale))
        previous, drawn = last, []
        for h in range(self.horizon):
            value = previous - last if self.relative else previous
            out, state = encoder.step(torch.cat([value, ahead[:, h]], dim=-1), state)
            values = self._parameters(head, out[:, None], last)
            uniform = torch.rand(values.shape[:-1], generator=generator, device=generator.device)
            draw = self.output.inverse_cdf(values, many, uniform.to(values.device))
            drawn.append(draw[:, 0])
            previous = many.normalise(draw)[:, 0].to(last.dtype)
        paths_first = torch.stack(drawn, dim=1).view(size, paths, self.horizon, self.targets)
        return paths_first.permute(0, 2, 3, 1)

"""Gradient-flow diagnostics: what backpropagation through time does to the gradient, measured
during training without changing it (``callbacks=diagnostics``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# float32's smallest normal number: a vanished gradient is drawn and averaged at this floor
# instead of as log(0)
TINY = torch.finfo(torch.float32).tiny


def _name(layer: int, direction: int) -> str:
    return f"l{layer}" + ("_reverse" if direction else "")


def state_gradient_norms(
    module: L.LightningModule, encoder: RNNEncoder, batch: Any
) -> dict[str, torch.Tensor]:
    """‖∂L/∂h_t‖ of every sequence and step, per layer and direction of ``encoder``:
    ``{"l0": (batch, time), "l0_reverse": ...}``, where L is ``module.training_loss(batch)``
    and h_t the state after step t *in the order the direction reads* (the backward direction
    reads each sequence from its last valid step), so column 0 is the first step read. Steps
    past a sequence's length are NaN.

    A separate forward and backward pass, side-effect free: the encoder runs its unrolled path
    (each h_t a tensor of its own, so the gradient reaching it includes every later step; the
    fused kernels only expose the direct part), gradients go to the states alone (no parameter
    ``.grad`` is touched), and the random generators (dropout, input noise) are restored after.
    """
    lengths = batch.lengths.cpu()
    device = batch.x.device
    devices = [device.index or 0] if device.type == "cuda" else []
    impl = encoder.impl
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        encoder.impl, encoder.recorded = "padded", []
        try:
            loss = cast(Any, module).training_loss(batch)
            recorded = encoder.recorded
        finally:
            encoder.impl, encoder.recorded = impl, None
        states = [h for _, _, steps in recorded for h in steps]
        grads = torch.autograd.grad(loss, states, allow_unused=True)
    norms: dict[str, torch.Tensor] = {}
    index = 0
    steps = torch.arange(batch.x.shape[1])
    # step s of the reading order is time t = s forwards, t = length - 1 - s backwards; both read
    # their valid steps first, so the valid ones are s < length either way
    valid = steps[None, :] < lengths[:, None]
    for layer, direction, hs in recorded:
        per_step = [
            torch.zeros(len(lengths)) if g is None else g.detach().double().norm(dim=-1).cpu()
            for g in grads[index : index + len(hs)]
        ]
        index += len(hs)
        norm = torch.stack(per_step, dim=1)
        norms[_name(layer, direction)] = norm.masked_fill(~valid, math.nan)
    return norms


def first_over_last(norms: torch.Tensor, lengths: torch.Tensor) -> float:
    """Geometric mean over sequences of ‖∂L/∂h‖ at the first step read over the last step read
    (<< 1: the gradient vanished on its way back through time; >> 1: it grew)."""
    first = norms[:, 0].clamp(min=TINY)
    last = norms[torch.arange(len(norms)), lengths.cpu() - 1].clamp(min=TINY)
    return float(torch.exp((first.log() - last.log()).mean()))


def profile_by_time(norms: torch.Tensor) -> torch.Tensor:
    """Mean over the sequences valid at each step of the reading order (NaN-aware)."""
    return norms.nanmean(dim=0)


def gradient_flow_figure(profiles: dict[str, torch.Tensor], title: str = "") -> Figure:
    """‖∂L/∂h_t‖ against the step t (in each direction's reading order), log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    for name, profile in profiles.items():
        ax.plot(range(len(profile)), profile.clamp(min=TINY).numpy(), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step t (reading order)")
    ax.set_ylabel("mean ‖∂L/∂h_t‖")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def recurrent_weights(encoder: RNNEncoder) -> dict[str, torch.Tensor]:
    """Each recurrent weight matrix (``weight_hh`` per layer and direction; gates stacked)."""
    return {
        name: param.detach()
        for name, param in encoder.rnn.named_parameters()
        if name.startswith("weight_hh")
    }


class GradientFlowDiagnostics(L.Callback):
    """Every ``every_n_steps`` training steps, on the step's batch and with its weights:

    - ``diagnostics/grad_h_first_over_last/<layer>``: ‖∂L/∂h_t‖ at the first step a direction
      reads over the last (geometric mean over the batch); and the whole profile over t as a
      figure (``diagnostics/grad_h``, log scale) every ``figure_every_n_steps`` steps and at the
      end of training, from the latest pass (drawing one costs about as much as a few training
      steps of a small model, so less often than the scalars);
    - ``diagnostics/grad_norm``: the total gradient norm before clipping, and
      ``diagnostics/clip_fraction``: the share of the steps since the last log on which clipping
      fired (the norm, or for ``value`` clipping the largest entry, exceeded the limit);
    - histograms of every parameter and its gradient (``weights/``, ``gradients/``) every
      ``figure_every_n_steps`` steps (they cost about as much as the state gradients);
    - ``diagnostics/sigma_max/<weight_hh_...>``: the largest singular value of each recurrent
      weight matrix.

    Figures and histograms go to TensorBoard loggers, scalars to every logger, all written on
    global rank 0 only and none into the metrics the run returns or monitors. Training is
    unchanged (tested bit-identical); the cost at ``every_n_steps=50`` is measured by
    ``scripts/bench/diagnostics.py``.
    """

    def __init__(
        self, every_n_steps: int = 50, figure_every_n_steps: int = 500, histograms: bool = True
    ) -> None:
        if every_n_steps < 1 or figure_every_n_steps % every_n_steps:
            raise ConfigError(
                f"callbacks.diagnostics.every_n_steps must be >= 1 and divide "
                f"figure_every_n_steps, got {every_n_steps} and {figure_every_n_steps}"
            )
        self.every_n_steps = every_n_steps
        self.figure_every_n_steps = figure_every_n_steps
        self.histograms = histograms
        self.profiles: dict[str, torch.Tensor] = {}
        self._profile_step = 0
        self._drawn_step: int | None = None
        self._steps = 0
        self._fired: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and not callable(getattr(pl_module, "training_loss", None)):
            raise ConfigError(
                f"callbacks=diagnostics needs the model's training_loss(batch) (see "
                f"models/base.py); {type(pl_module).__name__} has none"
            )

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.is_global_zero and trainer.global_step % self.every_n_steps == 0

    @staticmethod
    def _encoder(pl_module: L.LightningModule) -> RNNEncoder | None:
        return next((m for m in pl_module.modules() if isinstance(m, RNNEncoder)), None)

    @staticmethod
    def _log(trainer: L.Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _tensorboards(trainer: L.Trainer) -> list[Any]:
        return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        encoder = self._encoder(pl_module)
        if encoder is None or not self._due(trainer):
            return
        if self.profiles and self._profile_step == trainer.global_step:
            return  # another micro-batch of the same step (gradient accumulation)
        with trainer.precision_plugin.train_step_context():
            norms = state_gradient_norms(pl_module, encoder, batch)
        ratios = {
            f"diagnostics/grad_h_first_over_last/{name}": first_over_last(n, batch.lengths)
            for name, n in norms.items()
        }
        self._log(trainer, ratios)
        self.profiles = {name: profile_by_time(n) for name, n in norms.items()}
        self._profile_step = trainer.global_step
        if trainer.global_step % self.figure_every_n_steps == 0:
            self._draw(trainer)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if not trainer.is_global_zero:
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        # every step, for the clipping share; kept on the device (no synchronising read)
        norm = torch.nn.utils.get_total_norm(grads)
        limit = trainer.gradient_clip_val
        if limit is not None:
            if trainer.gradient_clip_algorithm == "value":
                peak = torch.stack([g.abs().max() for g in grads]).max()
                fired = peak > float(limit)
            else:
                fired = norm > float(limit)
            self._fired = fired.float() if self._fired is None else self._fired + fired
        self._steps += 1
        if trainer.global_step % self.every_n_steps:
            return
        scalars = {"diagnostics/grad_norm": float(norm)}
        if self._fired is not None:
            scalars["diagnostics/clip_fraction"] = float(self._fired) / self._steps
        self._fired, self._steps = None, 0
        encoder = self._encoder(pl_module)
        if encoder is not None:
            for name, weight in recurrent_weights(encoder).items():
                sigma = torch.linalg.matrix_norm(weight.float(), ord=2)
                scalars[f"diagnostics/sigma_max/{name}"] = float(sigma)
        self._log(trainer, scalars)
        if self.histograms and trainer.global_step % self.figure_every_n_steps == 0:
            for writer in self._tensorboards(trainer):
                for name, param in pl_module.named_parameters():
                    writer.add_histogram(f"weights/{name}", param.detach(), trainer.global_step)
                    if param.grad is not None:
                        writer.add_histogram(f"gradients/{name}", param.grad, trainer.global_step)

    def _draw(self, trainer: L.Trainer) -> None:
        for writer in self._tensorboards(trainer):
            figure = gradient_flow_figure(self.profiles, f"step {self._profile_step}")
            writer.add_figure("diagnostics/grad_h", figure, self._profile_step)
        self._drawn_step = self._profile_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.profiles and trainer.is_global_zero and self._drawn_step != self._profile_step:
            self._draw(trainer)

"""Variational ("locked") dropout and weight drop for the recurrent encoder.

Variational dropout (Gal & Ghahramani 2016) drops the same features of a sequence at every time
step: one mask per sequence, on the encoder's inputs, between stacked layers and on the top
layer's outputs. Weight drop (DropConnect on the hidden-to-hidden weights, Merity, Keskar &
Socher 2017) masks ``weight_hh`` once per forward pass, so the same dropped recurrent
connections hold at every step, and the fused kernels still run over the whole sequence (no
per-step Python loop). Both act in training only; the parameters are never masked in place, so
checkpoints hold the raw weights and evaluation uses them.

Every path that runs a regularised encoder draws its masks through ``draw_masks``, in one fixed
order, so from the same random state the packed and the padded paths use the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from rnnlab.utils.errors import ConfigError

SETTINGS = ("locked_input_dropout", "locked_layer_dropout", "locked_output_dropout", "weight_drop")


@dataclass(frozen=True)
class Regularisers:
    """The probabilities (0: off) of ``model.encoder.<setting>`` for each of ``SETTINGS``."""

    locked_input_dropout: float = 0.0
    locked_layer_dropout: float = 0.0
    locked_output_dropout: float = 0.0
    weight_drop: float = 0.0

    def check(self, num_layers: int, dropout: float) -> None:
        """Each probability in [0, 1); layer dropout only between layers, and not beside the
        per-step ``dropout`` that also acts there."""
        for name in SETTINGS:
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"model.encoder.{name}={value} must be in [0, 1)")
        if self.locked_layer_dropout and num_layers < 2:
            raise ConfigError(
                "model.encoder.locked_layer_dropout acts between stacked layers: set "
                "model.encoder.num_layers >= 2, or use locked_input_dropout / "
                "locked_output_dropout"
            )
        if self.locked_layer_dropout and dropout:
            raise ConfigError(
                "model.encoder.dropout and model.encoder.locked_layer_dropout both drop between "
                "layers: set one of them to 0"
            )

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in SETTINGS)


@dataclass
class Masks:
    """One forward pass's masks: per sequence (batch, features), scaled by 1 / (1 - p), or
    None where off; ``between[layer]`` for the inputs of ``layer`` >= 1; and the dropped
    ``weight_hh`` of each (layer, direction)."""

    input: torch.Tensor | None = None
    between: dict[int, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None
    weight_hh: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def locked(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (batch, time, features) with ``mask`` applied at every step."""
        return x if mask is None else x * mask[:, None, :]


def _sequence_mask(like: torch.Tensor, batch: int, features: int, p: float) -> torch.Tensor:
    keep = 1.0 - p
    return like.new_empty((batch, features)).bernoulli_(keep).div_(keep)


def draw_masks(
    regularisers: Regularisers,
    like: torch.Tensor,
    input_size: int,
    layer_size: int,
    weight_hh: dict[tuple[int, int], torch.Tensor],
) -> Masks:
    """The masks of a batch of ``like.shape[0]`` sequences (dtype and device of ``like``):
    the input mask, each layer's, the output mask, then each ``weight_hh`` in the order given."""
    batch, masks = like.shape[0], Masks()
    if regularisers.locked_input_dropout:
        masks.input = _sequence_mask(like, batch, input_size, regularisers.locked_input_dropout)
    if regularisers.locked_layer_dropout:
        layers = {layer for layer, _ in weight_hh}
        for layer in sorted(layers - {0}):
            p = regularisers.locked_layer_dropout
            masks.between[layer] = _sequence_mask(like, batch, layer_size, p)
    if regularisers.locked_output_dropout:
        p = regularisers.locked_output_dropout
        masks.output = _sequence_mask(like, batch, layer_size, p)
    if regularisers.weight_drop:
        for key, weight in weight_hh.items():
            masks.weight_hh[key] = F.dropout(weight, regularisers.weight_drop, training=True)
    return masks

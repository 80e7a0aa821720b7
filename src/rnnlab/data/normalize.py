"""Per-channel normalisation fitted on the training split only; its state travels in checkpoints."""

from __future__ import annotations

import numpy as np
import torch

from rnnlab.utils.errors import choice

METHODS = ("zscore", "minmax", "none")
# per-sequence scalings, applied to each sequence alone before the fitted normaliser
SEQUENCE_SCALES = ("none", "maxabs")
# Inputs are float32 tensors. A value this large keeps ``x - shift`` and ``max - min`` (at most
# twice the largest magnitude) finite in float32; anything larger would reach the model as inf.
MAX_ABS_VALUE = float(np.finfo(np.float32).max) / 4
# The smallest float32 magnitude with full precision: below it a value loses its digits, and
# below ~1.4e-45 becomes 0, so 1e-300 would train, and be scored, as an exact 0.
MIN_ABS_VALUE = float(np.finfo(np.float32).tiny)


def outside_float32(values: np.ndarray) -> np.ndarray:
    """Where finite ``values`` (float64) are too large or too small (non-zero) for float32
    training (NaN is never flagged: missing values are checked apart)."""
    magnitude = np.abs(values)
    return (magnitude > MAX_ABS_VALUE) | ((magnitude > 0) & (magnitude < MIN_ABS_VALUE))


def float32_issue(value: float, symbol: str = "x") -> str:
    """Why ``value``, flagged by ``outside_float32``, cannot be trained on."""
    if abs(value) > MAX_ABS_VALUE:
        return f"beyond what float32 training can represent (|{symbol}| <= {MAX_ABS_VALUE:.2g})"
    return (
        f"too small for float32 training, which would round it to 0 or lose its digits "
        f"(non-zero |{symbol}| >= {MIN_ABS_VALUE:.2g})"
    )


def scale_sequence(sequence: torch.Tensor, how: str) -> torch.Tensor:
    """``maxabs``: each channel divided by its largest absolute value in this sequence (a channel
    that is all zero stays zero), so the sequence keeps its shape and loses its magnitude; for
    data whose scale varies between samples by orders of magnitude (counts per country, say)
    where the shape carries the signal. ``none``: unchanged. The sequence holds valid steps
    only (it is not padded yet), so padding never enters the maximum."""
    if how == "none":
        return sequence
    peak = sequence.abs().amax(dim=0)
    return sequence / torch.where(peak > 0, peak, torch.ones_like(peak))


class Normalizer:
    """Maps each channel with ``(x - shift) / scale``; statistics pool every valid time step of
    every training sequence, so long sequences weigh more, as they do in the loss."""

    def __init__(self, method: str = "zscore") -> None:
        self.method = choice(method, METHODS, "data.normalize", "normalisation")
        self.shift: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None

    @property
    def fitted(self) -> bool:
        return self.shift is not None

    def fit(self, sequences: list[torch.Tensor]) -> Normalizer:
        steps = torch.cat(sequences, dim=0).double()
        channels = steps.shape[1]
        if self.method == "zscore":
            shift, scale = steps.mean(dim=0), steps.std(dim=0, unbiased=False)
        elif self.method == "minmax":
            shift = steps.amin(dim=0)
            scale = steps.amax(dim=0) - shift
        else:
            shift, scale = torch.zeros(channels), torch.ones(channels)
        return self.set_statistics(shift, scale)

    def set_statistics(self, shift: torch.Tensor, scale: torch.Tensor) -> Normalizer:
        """Fitted with these statistics (float64, per channel), computed elsewhere (a streaming
        pass over cached values: ``ts_cache.fit_normalizer``)."""
        # A constant channel carries no information; leave it centred rather than divide by zero.
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.shift, self.scale = shift.float(), scale.float()
        return self

    def transform(self, sequence: torch.Tensor) -> torch.Tensor:
        if self.shift is None or self.scale is None:
            raise RuntimeError("Normalizer.transform called before fit or load_state_dict")
        return (sequence - self.shift) / self.scale

    def state_dict(self) -> dict[str, object]:
        return {"method": self.method, "shift": self.shift, "scale": self.scale}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.method = str(state["method"])
        self.shift = state["shift"]  # type: ignore[assignment]
        self.scale = state["scale"]  # type: ignore[assignment]

"""What a real-valued head predicts for each target step: one value (``Point``, today's default),
a distribution (``rnnlab.models.distributions``: trained by negative log-likelihood, DeepAR's
way), a set of quantiles (``Quantiles``: trained by the pinball loss), or, for the
autoregressive decoder's forecasts, draws (``Samples``).

The head gives ``width`` numbers per value, on the normalised scale of the data's
``TargetScaling``. ``arrange`` turns them into parameters; component 0 of a distribution, and
every component of a quantile set, is a location, the part that ``relative`` forecasting moves
by the last observed value (``location_mask``). Everything in original units goes through the
batch's ``TargetScaling`` (shift, scale per row and target): a location maps as a value does, a
spread is multiplied by the scale, so the distribution in original units is the normalised one
moved and stretched, as DeepAR rescales its outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rnnlab.batch import TargetScaling
from rnnlab.models import intervals
from rnnlab.utils.errors import ConfigError

# reported when a distribution is trained and model.quantiles names none
DEFAULT_LEVELS = (0.1, 0.5, 0.9)
_MIN_SPREAD = 1e-3  # normalised units: keeps a likelihood finite when a window is constant


def spread_of(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + _MIN_SPREAD


def per_value(scaling: TargetScaling, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift and scale (batch, targets) broadcast to ``value`` (batch, horizon, targets)."""
    return scaling.shift[:, None].expand_as(value), scaling.scale[:, None].expand_as(value)


class Point:
    """One value per step: the loss is the regressor's (``model.loss``)."""

    name = "point"
    width = 1
    probabilistic = False
    widens = False  # whether ``widen`` can change its spread (model.calibration=spread)

    def location_mask(self) -> torch.Tensor:
        return torch.ones(self.width, dtype=torch.bool)

    def moved(self, values: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """``values`` (batch, steps, targets, width) with their locations moved by ``last``
        (batch, targets), the last observed values: ``relative`` forecasting's way back."""
        return values + last[:, None, :, None] * self.location_mask().to(values.device)

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def point(self, values: torch.Tensor, scaling: TargetScaling) -> torch.Tensor:
        """The point forecast in original units (batch, horizon, targets)."""
        return scaling.denormalise(values[..., 0])

    def inverse_cdf(
        self, values: torch.Tensor, scaling: TargetScaling, uniform: torch.Tensor
    ) -> torch.Tensor:
        """A draw per value in original units: the quantile at ``uniform`` (shaped like the
        values without their last dimension). One value has no spread: it is its own draw."""
        return self.point(values, scaling)

    def widen(self, values: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        """``values`` with the spread about the median multiplied by ``factor`` (the median
        kept): ``rnnlab.models.calibration``'s one change to a forecast."""
        raise NotImplementedError


class Probabilistic(Point):
    """An output with a loss of its own and quantiles (every class below)."""

    probabilistic = True

    def loss(
        self, values: torch.Tensor, target: torch.Tensor, scaling: TargetScaling
    ) -> torch.Tensor:
        """The training loss of ``values`` for the normalised ``target``."""
        raise NotImplementedError

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        """Quantiles at ``levels`` in original units (batch, horizon, targets, levels)."""
        raise NotImplementedError

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        """The CRPS at each ``target`` (original units), in original units."""
        raise NotImplementedError

    def has(self, level: float) -> bool:
        """Whether this output's quantile at ``level`` is exact (scored), not interpolated."""
        return True


class Quantiles(Probabilistic):
    """``levels`` quantiles per step, kept in order: the one nearest the median is free, each
    next one above (below) it adds (subtracts) a step of at least 0.001 (normalised units), so
    they never cross."""

    name = "quantiles"
    widens = True

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = check_levels(levels, "model.quantiles")
        self.width = len(self.levels)
        self.anchor = int(np.argmin([abs(q - 0.5) for q in self.levels]))

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        a = self.anchor
        centre = raw[..., a : a + 1]
        above = centre + torch.cumsum(spread_of(raw[..., a + 1 :]), dim=-1)
        below = centre - torch.cumsum(spread_of(raw[..., :a].flip(-1)), dim=-1).flip(-1)
        return torch.cat([below, centre, above], dim=-1)

    def loss(
        self, values: torch.Tensor, target: torch.Tensor, scaling: TargetScaling
    ) -> torch.Tensor:
        levels = torch.tensor(self.levels, dtype=values.dtype, device=values.device)
        return intervals.pinball(values, target[..., None], levels).mean()

    def point(self, values: torch.Tensor, scaling: TargetScaling) -> torch.Tensor:
        return self.quantiles(values, scaling, [0.5])[..., 0]

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        """Quantiles at ``levels`` in original units (batch, horizon, targets, levels), linear
        between the trained levels and flat beyond them (only exact levels are scored)."""
        known = torch.tensor(self.levels, dtype=values.dtype, device=values.device)
        wanted = torch.tensor(list(levels), dtype=values.dtype, device=values.device)
        found = intervals.at_levels(values, known, wanted)
        return scaling.denormalise(found.movedim(-1, 0)).movedim(0, -1)

    def has(self, level: float) -> bool:
        return any(math.isclose(level, q, abs_tol=1e-9) for q in self.levels)

    def widen(self, values: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        """Every quantile's distance from the middle one times ``factor`` (on the normalised
        scale: original units are an affine map of it, so the same holds there)."""
        centre = values[..., self.anchor : self.anchor + 1]
        return centre + (values - centre) * factor

    def inverse_cdf(
        self, values: torch.Tensor, scaling: TargetScaling, uniform: torch.Tensor
    ) -> torch.Tensor:
        """Linear between the trained quantiles, the outermost ones beyond them."""
        known = torch.tensor(self.levels, dtype=values.dtype, device=values.device)
        if len(known) == 1:
            return scaling.denormalise(values[..., 0])
        u = uniform.to(values.dtype)
        upper = torch.searchsorted(known, u.contiguous()).clamp(1, len(known) - 1)
        low = values.gather(-1, (upper - 1)[..., None])[..., 0]
        high = values.gather(-1, upper[..., None])[..., 0]
        weight = ((u - known[upper - 1]) / (known[upper] - known[upper - 1])).clamp(0, 1)
        return scaling.denormalise(low + (high - low) * weight)

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        """The CRPS of the distribution these quantiles describe: its quantile function linear
        between the trained levels and flat beyond them (the outermost quantiles hold the
        tails), from the 100-level grid. Twice the mean pinball loss over the trained levels
        alone would favour a few levels in the tails, whose losses are small."""
        grid = intervals.crps_grid().tolist()
        found = self.quantiles(values, scaling, grid).to(target.dtype)
        return intervals.crps_from_grid(found, target)


class Samples(Probabilistic):
    """Draws of a forecast (``values``: batch, horizon, targets, draws, in original units), as
    the autoregressive decoder samples them: the quantiles and the CRPS of their empirical
    distribution (its median the point forecast)."""

    name = "samples"
    widens = True

    def point(self, values: torch.Tensor, scaling: TargetScaling) -> torch.Tensor:
        return self.quantiles(values, scaling, [0.5])[..., 0].to(values.dtype)

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        return self._drawn(values, levels)

    @staticmethod
    def _drawn(values: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
        """The empirical distribution's quantiles: the smallest draw with at least that share
        at or below it (so each is a draw: whole numbers stay whole)."""
        count = values.shape[-1]
        ranks = [min(count - 1, max(0, math.ceil(count * q - 1e-9) - 1)) for q in levels]
        ordered = values.double().sort(dim=-1).values
        return ordered[..., ranks]

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        return intervals.crps_from_samples(values.to(target.dtype), target)

    def widen(self, values: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        """Every draw's distance from the median draw times ``factor``."""
        centre = self._drawn(values, [0.5]).to(values.dtype)
        return centre + (values - centre) * factor


def check_levels(levels: Sequence[float], setting: str) -> tuple[float, ...]:
    """``levels`` as a sorted tuple of distinct probabilities strictly between 0 and 1."""
    values = [float(q) for q in levels]
    if not values or any(not 0 < q < 1 for q in values) or len(set(values)) < len(values):
        raise ConfigError(
            f"{setting}={values} must list distinct probabilities strictly between 0 and 1, "
            "e.g. [0.1,0.5,0.9]"
        )
    return tuple(sorted(values))

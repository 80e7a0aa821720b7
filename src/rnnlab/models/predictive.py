"""What a real-valued head predicts for each target step: one value (``Point``, today's default),
a distribution (``Normal``, ``StudentT``, ``NegativeBinomial``: trained by negative
log-likelihood, DeepAR's way) or a set of quantiles (``Quantiles``: trained by the pinball loss).

The head gives ``width`` numbers per value, on the normalised scale of the data's
``TargetScaling``. ``arrange`` turns them into parameters; component 0 of a distribution, and
every component of a quantile set, is a location, the part that ``relative`` forecasting moves
by the last observed value (``location_mask``). Everything in original units goes through the
batch's ``TargetScaling`` (shift, scale per row and target): a location maps as a value does, a
spread is multiplied by the scale, so the distribution in original units is the normalised one
moved and stretched, as DeepAR rescales its outputs. The negative binomial is of counts, so its
mean is taken to original units before the likelihood.

Quantiles of the Student-t and negative binomial come from scipy's inverse CDFs (float64, on the
CPU, no sampling: the same numbers on every run); their CRPS from the quantile grid
(``rnnlab.models.intervals``), the normal's and Student-t's in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rnnlab.batch import TargetScaling
from rnnlab.models import intervals
from rnnlab.utils.errors import ConfigError, DataError, choice

# reported when a distribution is trained and model.quantiles names none
DEFAULT_LEVELS = (0.1, 0.5, 0.9)
_MIN_SPREAD = 1e-3  # normalised units: keeps a likelihood finite when a window is constant


def _spread(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + _MIN_SPREAD


def _per_value(scaling: TargetScaling, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift and scale (batch, targets) broadcast to ``value`` (batch, horizon, targets)."""
    return scaling.shift[:, None].expand_as(value), scaling.scale[:, None].expand_as(value)


class Point:
    """One value per step: the loss is the regressor's (``model.loss``)."""

    name = "point"
    width = 1
    probabilistic = False

    def location_mask(self) -> torch.Tensor:
        return torch.ones(self.width, dtype=torch.bool)

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def point(self, values: torch.Tensor, scaling: TargetScaling) -> torch.Tensor:
        """The point forecast in original units (batch, horizon, targets)."""
        return scaling.denormalise(values[..., 0])


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

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = check_levels(levels, "model.quantiles")
        self.width = len(self.levels)
        self.anchor = int(np.argmin([abs(q - 0.5) for q in self.levels]))

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        a = self.anchor
        centre = raw[..., a : a + 1]
        above = centre + torch.cumsum(_spread(raw[..., a + 1 :]), dim=-1)
        below = centre - torch.cumsum(_spread(raw[..., :a].flip(-1)), dim=-1).flip(-1)
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

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        """Twice the mean pinball loss over the trained levels (the quantile-grid estimate of
        the CRPS; coarse with few levels)."""
        levels = torch.tensor(self.levels, dtype=target.dtype, device=target.device)
        found = self.quantiles(values, scaling, self.levels).to(target.dtype)
        return 2 * intervals.pinball(found, target[..., None], levels).mean(dim=-1)


class Normal(Probabilistic):
    """A normal per step: location and spread (softplus)."""

    name = "normal"
    width = 2

    def location_mask(self) -> torch.Tensor:
        return torch.tensor([True] + [False] * (self.width - 1))

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([raw[..., :1], _spread(raw[..., 1:2]), raw[..., 2:]], dim=-1)

    def loss(
        self, values: torch.Tensor, target: torch.Tensor, scaling: TargetScaling
    ) -> torch.Tensor:
        return -self._normalised(values).log_prob(target).mean()

    def _normalised(self, values: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Normal(values[..., 0], values[..., 1])

    def _original(self, values: torch.Tensor, scaling: TargetScaling) -> tuple[torch.Tensor, ...]:
        shift, scale = _per_value(scaling, values[..., 0])
        return values[..., 0] * scale + shift, values[..., 1] * scale

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        loc, spread = (v.double() for v in self._original(values, scaling))
        z = torch.special.ndtri(torch.tensor(list(levels), dtype=torch.float64, device=loc.device))
        return loc[..., None] + spread[..., None] * z

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        loc, spread = (v.to(target.dtype) for v in self._original(values, scaling))
        return intervals.crps_normal(loc, spread, target)


class StudentT(Normal):
    """A Student-t per step: location, spread and degrees of freedom (2 + softplus: finite
    variance)."""

    name = "student_t"
    width = 3

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([raw[..., :1], _spread(raw[..., 1:2]), 2 + F.softplus(raw[..., 2:3])], -1)

    def _normalised(self, values: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.StudentT(values[..., 2], values[..., 0], values[..., 1])

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        from scipy import stats

        loc, spread = (v.double() for v in self._original(values, scaling))
        df = values[..., 2].detach().double().cpu().numpy()[..., None]
        z = torch.from_numpy(stats.t.ppf(np.asarray(levels), df)).to(loc.device)
        return loc[..., None] + spread[..., None] * z

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        loc, spread = (v.to(target.dtype) for v in self._original(values, scaling))
        return intervals.crps_student_t(loc, spread, values[..., 2].to(target.dtype), target)


class NegativeBinomial(Normal):
    """A negative binomial of counts per step: its mean in original units is the softplus of the
    location taken to original units; its dispersion a softplus (variance mean + dispersion ×
    mean²). Targets must be counts."""

    name = "negative_binomial"
    width = 2

    def _counts(self, values: torch.Tensor, scaling: TargetScaling) -> tuple[torch.Tensor, ...]:
        shift, scale = _per_value(scaling, values[..., 0])
        mean = F.softplus(values[..., 0] * scale + shift) + 1e-6
        return mean, values[..., 1]  # the dispersion, already positive (arrange)

    def _distribution(
        self, values: torch.Tensor, scaling: TargetScaling
    ) -> torch.distributions.NegativeBinomial:
        mean, dispersion = self._counts(values, scaling)
        # torch's parametrisation: mean = total_count * p / (1 - p)
        return torch.distributions.NegativeBinomial(
            total_count=1 / dispersion, probs=(mean * dispersion) / (1 + mean * dispersion)
        )

    def loss(
        self, values: torch.Tensor, target: torch.Tensor, scaling: TargetScaling
    ) -> torch.Tensor:
        counts = scaling.denormalise(target)
        rounded = counts.round()
        bad = (counts < 0) | ((counts - rounded).abs() > 1e-3)
        if bool(bad.any()):
            value = counts[bad][0].item()
            raise DataError(
                f"model.distribution=negative_binomial needs counts (whole numbers >= 0), but a "
                f"target is {value:g}; use model.distribution=normal or student_t"
            )
        return -self._distribution(values, scaling).log_prob(rounded.clamp(min=0)).mean()

    def point(self, values: torch.Tensor, scaling: TargetScaling) -> torch.Tensor:
        return self.quantiles(values, scaling, [0.5])[..., 0].float()

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        from scipy import stats

        mean, dispersion = (
            v.detach().double().cpu().numpy()[..., None] for v in self._counts(values, scaling)
        )
        size = 1 / dispersion  # scipy's n; its p is the chance of a 'success'
        found = stats.nbinom.ppf(np.asarray(levels), size, size / (size + mean))
        return torch.from_numpy(found).to(values.device)

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        grid = intervals.crps_grid()
        found = self.quantiles(values, scaling, grid.tolist()).to(target.dtype)
        return intervals.crps_from_grid(found, target)


DISTRIBUTIONS = {"normal": Normal, "student_t": StudentT, "negative_binomial": NegativeBinomial}


def check_levels(levels: Sequence[float], setting: str) -> tuple[float, ...]:
    """``levels`` as a sorted tuple of distinct probabilities strictly between 0 and 1."""
    values = [float(q) for q in levels]
    if not values or any(not 0 < q < 1 for q in values) or len(set(values)) < len(values):
        raise ConfigError(
            f"{setting}={values} must list distinct probabilities strictly between 0 and 1, "
            "e.g. [0.1,0.5,0.9]"
        )
    return tuple(sorted(values))


def output_of(distribution: str | None, quantiles: Sequence[float] | None) -> Point:
    """The output the settings ask for: a distribution, else quantiles, else one value."""
    if distribution is not None:
        choice(distribution, DISTRIBUTIONS, "model.distribution", "distribution")
        return DISTRIBUTIONS[distribution]()
    if quantiles is not None:
        return Quantiles(quantiles)
    return Point()

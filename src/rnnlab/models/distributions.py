"""The likelihood outputs of ``rnnlab.models.predictive``: a normal, a Student-t and a
negative binomial per step (trained by negative log-likelihood, DeepAR's way), and
``output_of``, the output the settings ask for.

Quantiles of the Student-t and negative binomial come from scipy's inverse CDFs (float64, on the
CPU, no sampling: the same numbers on every run); the CRPS of the normal and Student-t in closed
form, the negative binomial's from a grid of its quantiles (``rnnlab.models.intervals``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rnnlab.batch import TargetScaling
from rnnlab.models import intervals
from rnnlab.models.predictive import (
    Point,
    Probabilistic,
    Quantiles,
    per_value,
    spread_of,
)
from rnnlab.utils.errors import DataError, choice


class Normal(Probabilistic):
    """A normal per step: location and spread (softplus)."""

    name = "normal"
    width = 2
    widens = True

    def location_mask(self) -> torch.Tensor:
        return torch.tensor([True] + [False] * (self.width - 1))

    def arrange(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([raw[..., :1], spread_of(raw[..., 1:2]), raw[..., 2:]], dim=-1)

    def loss(
        self, values: torch.Tensor, target: torch.Tensor, scaling: TargetScaling
    ) -> torch.Tensor:
        return -self._normalised(values).log_prob(target).mean()

    def _normalised(self, values: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Normal(values[..., 0], values[..., 1])

    def widen(self, values: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        """The spread (component 1) times ``factor``; the location (and a Student-t's degrees
        of freedom) kept."""
        return torch.cat([values[..., :1], values[..., 1:2] * factor, values[..., 2:]], dim=-1)

    def _original(self, values: torch.Tensor, scaling: TargetScaling) -> tuple[torch.Tensor, ...]:
        shift, scale = per_value(scaling, values[..., 0])
        return values[..., 0] * scale + shift, values[..., 1] * scale

    def quantiles(
        self, values: torch.Tensor, scaling: TargetScaling, levels: Sequence[float]
    ) -> torch.Tensor:
        loc, spread = (v.double() for v in self._original(values, scaling))
        z = torch.special.ndtri(torch.tensor(list(levels), dtype=torch.float64, device=loc.device))
        return loc[..., None] + spread[..., None] * z

    def inverse_cdf(
        self, values: torch.Tensor, scaling: TargetScaling, uniform: torch.Tensor
    ) -> torch.Tensor:
        loc, spread = self._original(values, scaling)
        return loc + spread * torch.special.ndtri(uniform.to(loc.dtype))

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
        return torch.cat(
            [raw[..., :1], spread_of(raw[..., 1:2]), 2 + F.softplus(raw[..., 2:3])], -1
        )

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

    def inverse_cdf(
        self, values: torch.Tensor, scaling: TargetScaling, uniform: torch.Tensor
    ) -> torch.Tensor:
        from scipy import stats

        loc, spread = self._original(values, scaling)
        df = values[..., 2].detach().double().cpu().numpy()
        z = stats.t.ppf(uniform.double().cpu().numpy(), df)
        return loc + spread * torch.from_numpy(z).to(device=loc.device, dtype=loc.dtype)

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
    widens = False  # counts: no spread to stretch about a median that stays a count

    def widen(self, values: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a negative binomial is not widened")

    def _counts(self, values: torch.Tensor, scaling: TargetScaling) -> tuple[torch.Tensor, ...]:
        shift, scale = per_value(scaling, values[..., 0])
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

    def inverse_cdf(
        self, values: torch.Tensor, scaling: TargetScaling, uniform: torch.Tensor
    ) -> torch.Tensor:
        from scipy import stats

        mean, dispersion = (
            v.detach().double().cpu().numpy() for v in self._counts(values, scaling)
        )
        size = 1 / dispersion
        found = stats.nbinom.ppf(uniform.double().cpu().numpy(), size, size / (size + mean))
        return torch.from_numpy(found).to(device=values.device, dtype=values.dtype)

    def crps(
        self, values: torch.Tensor, scaling: TargetScaling, target: torch.Tensor
    ) -> torch.Tensor:
        grid = intervals.crps_grid()
        found = self.quantiles(values, scaling, grid.tolist()).to(target.dtype)
        return intervals.crps_from_grid(found, target)


DISTRIBUTIONS = {"normal": Normal, "student_t": StudentT, "negative_binomial": NegativeBinomial}


def output_of(distribution: str | None, quantiles: Sequence[float] | None) -> Point:
    """The output the settings ask for: a distribution, else quantiles, else one value."""
    if distribution is not None:
        choice(distribution, DISTRIBUTIONS, "model.distribution", "distribution")
        return DISTRIBUTIONS[distribution]()
    if quantiles is not None:
        return Quantiles(quantiles)
    return Point()

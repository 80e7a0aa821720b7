"""The search space in Hydra's sweep syntax, as Optuna distributions.

``hydra.sweeper.params`` and the command line's own sweeps name one setting each:
``choice(a, b)`` (or ``a,b``) is categorical, ``interval(low, high)`` uniform between two floats
(``tag(log, interval(...))`` log-uniform), ``range(start, stop[, step])`` the integers Hydra's
range lists (stop excluded), a float range or a ``shuffle(...)`` the values it lists. A plain
``key=value`` on the command line fixes that setting for every trial and takes it out of the
space. A trial's values are written back as overrides Hydra reads as the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from rnnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

Primitive = str | int | float | bool | None


@dataclass
class SearchSpace:
    """What each trial draws (``distributions``, by override key) and the overrides every trial
    gets as typed (``fixed``)."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's command line: its drawn values, then the fixed overrides."""
        return [f"{key}={override_value(value)}" for key, value in params.items()] + self.fixed

    def first_point(self) -> list[str]:
        """The overrides of one point of the space (each setting's lowest or first value), to
        check that the space's settings compose before any trial is asked for."""
        return self.overrides({key: _first(d) for key, d in self.distributions.items()})


def _first(distribution: BaseDistribution) -> Any:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[0]
    return getattr(distribution, "low")  # noqa: B009 (Float- and IntDistribution alike)


def parse_space(params: dict[str, str], arguments: list[str]) -> SearchSpace:
    """The space of ``params`` (``hydra.sweeper.params``: key to sweep expression) with the
    command line's ``arguments`` on top: a sweep there replaces the setting's distribution, a
    plain value fixes it."""
    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in params.items()]
    space = SearchSpace()
    for override in parser.parse_overrides([*lines, *arguments]):
        key = override.get_key_element()
        if override.is_sweep_override():
            space.distributions[key] = distribution(override)
            continue
        space.distributions.pop(key, None)
        space.fixed = [f for f in space.fixed if _key(f) != key]
        space.fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    return space


def _key(line: str) -> str:
    return line.split("=", 1)[0]


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override; a ConfigError for a sweep Optuna cannot
    draw from (``glob``, a choice of lists)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key = override.get_key_element()
    value = override.value()
    if isinstance(value, IntervalSweep):
        low, high = float(value.start or 0.0), float(value.end or 0.0)
        if not low < high or ("log" in value.tags and low <= 0):
            bound = "0 < low < high" if "log" in value.tags else "low < high"
            raise ConfigError(f"{override.input_line}: an interval needs {bound}")
        return FloatDistribution(low, high, log="log" in value.tags)
    if isinstance(value, RangeSweep) and not value.shuffle:
        listed = list(override.sweep_iterator())
        if not listed:
            raise ConfigError(f"{override.input_line}: the range lists no value")
        integers = [v for v in listed if isinstance(v, int) and not isinstance(v, bool)]
        if len(integers) == len(listed):
            step = abs(int(value.step or 1))  # a descending range lists the same integers
            return IntDistribution(min(integers), max(integers), step=step)
        return CategoricalDistribution(_choices(override, listed))
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        return CategoricalDistribution(_choices(override, list(override.sweep_iterator())))
    raise ConfigError(
        f"{key}: {(override.input_line or '').split('=', 1)[-1]} is not a sweep Optuna draws "
        "from; "
        "use choice(...), interval(low, high), tag(log, interval(low, high)) or range(...)"
    )


def _choices(override: Override, values: list[Any]) -> list[Primitive]:
    if not values or not all(isinstance(v, Primitive) for v in values):
        raise ConfigError(
            f"{override.input_line}: a choice needs values that are numbers, strings, true, "
            "false or null"
        )
    return values


def override_value(value: Any) -> str:
    """``value`` as Hydra's override grammar reads it back: null, true/false, numbers as
    written, strings bare where Hydra would read the same string and quoted elsewhere."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    try:
        read = OverridesParser.create().parse_override(f"k={text}").value()
    except Exception:  # not a valid bare value: quote it
        read = None
    if read == text and isinstance(read, str):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

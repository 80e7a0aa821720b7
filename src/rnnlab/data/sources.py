"""Real forecasting series that ship inside installed packages (no download at run time)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from rnnlab.utils.errors import ConfigError


def co2() -> pd.DataFrame:
    """Weekly atmospheric CO2 at Mauna Loa, March 1958 - December 2001 (2,284 weeks, 59 of them
    missing), shipped with statsmodels (``statsmodels.datasets.co2``). Columns: date, co2 (ppm)."""
    from statsmodels.datasets import co2 as dataset

    data = dataset.load_pandas().data
    return data.rename_axis("date").reset_index()


SOURCES: dict[str, Callable[[], pd.DataFrame]] = {"co2": co2}

# For axis labels: each shipped series' column units and the length of one time step.
UNITS: dict[str, dict[str, str]] = {"co2": {"co2": "ppm"}}
STEPS: dict[str, str] = {"co2": "weeks"}


def load_source(name: str) -> pd.DataFrame:
    if name not in SOURCES:
        raise ConfigError(
            f"unknown data.source {name!r}; shipped series: {', '.join(SOURCES)} "
            "(or set data.file to your own CSV)"
        )
    return SOURCES[name]()

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


FERTILITY_YEARS = range(1960, 2012)  # 2012 and 2013 are empty for every country


def fertility() -> pd.DataFrame:
    """Total fertility rate (births per woman), World Bank indicator SP.DYN.TFRT.IN, shipped with
    statsmodels (``statsmodels.datasets.fertility``): of its 219 countries and aggregates, the
    192 with a value in every year 1960-2011 (52 years each; four of them are World Bank
    aggregates, LCN, OED, OSS and PSS, kept as shipped), in the file's order. Long format:
    columns country (the Country Code), year, fertility."""
    from statsmodels.datasets import fertility as dataset

    years = [str(year) for year in FERTILITY_YEARS]
    wide = dataset.load_pandas().data.set_index("Country Code")[years]
    wide = wide[wide.notna().all(axis=1)]
    # stacked row by row: each country's years in order, the countries in the file's order
    long = wide.stack().rename("fertility").rename_axis(["country", "year"]).reset_index()
    long["year"] = long["year"].astype(int)
    return long


SOURCES: dict[str, Callable[[], pd.DataFrame]] = {"co2": co2, "fertility": fertility}

# For axis labels: each shipped series' column units and the length of one time step.
UNITS: dict[str, dict[str, str]] = {
    "co2": {"co2": "ppm"},
    "fertility": {"fertility": "births per woman"},
}
STEPS: dict[str, str] = {"co2": "weeks", "fertility": "years"}


def load_source(name: str) -> pd.DataFrame:
    if name not in SOURCES:
        raise ConfigError(
            f"unknown data.source {name!r}; shipped series: {', '.join(SOURCES)} "
            "(or set data.file to your own CSV)"
        )
    return SOURCES[name]()

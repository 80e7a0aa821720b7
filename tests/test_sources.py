"""The shipped forecasting series: the fertility panel read from statsmodels' file, written out by
``rnnlab.data.export`` and cut by ``experiment=forecast_fertility`` as its config says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from rnnlab.data.export import export
from rnnlab.data.sources import SOURCES, STEPS, UNITS, fertility, load_source
from rnnlab.utils.errors import ConfigError
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return fertility()


def test_fertility_is_every_country_without_a_gap_in_1960_2011(panel):
    from statsmodels.datasets import fertility as dataset

    wide = dataset.load_pandas().data.set_index("Country Code")
    assert wide[["2012", "2013"]].isna().all().all()  # why the years stop at 2011
    assert list(panel.columns) == ["country", "year", "fertility"]
    assert panel["country"].nunique() == 192 and len(panel) == 192 * 52
    # back to the wide table: the same rows and values as the file's complete countries
    back = panel.pivot(index="country", columns="year", values="fertility")
    years = [str(year) for year in range(1960, 2012)]
    complete = wide.loc[wide[years].notna().all(axis=1), years]
    assert len(complete) == 192
    np.testing.assert_array_equal(back.loc[complete.index].to_numpy(), complete.to_numpy())
    # a country with a gap is left out, whole
    assert wide.loc["SGP", years].isna().any() and "SGP" not in set(panel["country"])
    assert panel.loc[(panel["country"] == "ABW") & (panel["year"] == 1960), "fertility"].item() == (
        4.82
    )


def test_fertility_rows_run_through_each_country_in_year_order(panel):
    assert panel["year"].dtype.kind == "i"
    countries = panel["country"].to_numpy()
    # each country's 52 rows together, in the file's order, years 1960..2011 within each
    assert list(dict.fromkeys(countries))[:3] == ["ABW", "AFG", "AGO"]
    assert (countries.reshape(192, 52) == countries[::52, None]).all()
    assert (panel["year"].to_numpy().reshape(192, 52) == np.arange(1960, 2012)).all()


def test_fertility_is_named_for_axes_and_errors():
    assert SOURCES["fertility"] is fertility
    assert UNITS["fertility"] == {"fertility": "births per woman"} and STEPS["fertility"] == "years"
    with pytest.raises(ConfigError, match="shipped series: co2, fertility"):
        load_source("fertilty")


def test_fertility_exports_as_a_csv_training_reads(panel, tmp_path: Path):
    written = pd.read_csv(export("fertility", tmp_path / "fertility.csv"))
    pd.testing.assert_frame_equal(written, panel, check_dtype=False)


def test_the_fertility_experiment_cuts_4_test_windows_per_country(tmp_path: Path):
    cfg = compose_config("train", ["experiment=forecast_fertility"], tmp_path)
    data = instantiate(cfg.data)
    data.setup()
    assert (data.lookback, data.horizon, data.season_length) == (15, 5, 1)
    counts = {split: len(data.windows[split]) for split in ("train", "val", "test")}
    assert counts == {"train": 192 * 17, "val": 192 * 4, "test": 192 * 4}
    assert data.series_names[:2] == ["ABW", "AFG"] and len(data.series) == 192
    # 1960-1995 train, 1996-2003 val, 2004-2011 test: the first test origin is 2004
    assert data.parts(data._series(data._table())[0]) == (36, 44, 52)
    assert data.windows["test"].origins[:4].tolist() == [44, 45, 46, 47]
    assert data.target_unit("fertility") == "births per woman" and data.step_unit() == "years"

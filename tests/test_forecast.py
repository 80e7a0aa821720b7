"""Forecasting data: window construction, chronological splits without leakage, missing values,
baselines and metrics in original units, and the errors a bad table gets."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rnnlab.data.forecast import ForecastDataModule, seasonal_naive, window_origins
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.utils.errors import ConfigError, DataError


def toy_frame(n: int = 20, series: int = 1) -> pd.DataFrame:
    """Series i holds 100 * (i + 1) + t^1.5 plus a covariate; distinct values at every step."""
    parts = []
    for s in range(series):
        t = np.arange(n, dtype=float)
        parts.append(
            pd.DataFrame({"id": f"s{s}", "t": t, "y": 100.0 * (s + 1) + t**1.5, "c": np.cos(t)})
        )
    return pd.concat(parts, ignore_index=True)


def module(frame: pd.DataFrame | None = None, **kwargs) -> ForecastDataModule:
    settings = {
        "frame": frame,
        "time_column": "t",
        "target_columns": ["y"],
        "lookback": 3,
        "horizon": 2,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        **kwargs,
    }
    dm = ForecastDataModule(**settings)
    dm.setup("fit")
    return dm


# --- windows ---------------------------------------------------------------------------------
def test_window_origins_are_anchored_at_the_part_end():
    assert window_origins(0, 10, lookback=3, horizon=2, stride=1) == [3, 4, 5, 6, 7, 8]
    assert window_origins(0, 10, lookback=3, horizon=2, stride=3) == [5, 8]
    # a later part may read history from before its start, but targets stay inside it
    assert window_origins(10, 15, lookback=3, horizon=2, stride=1) == [10, 11, 12, 13]
    assert window_origins(10, 11, lookback=3, horizon=2, stride=1) == []


def test_window_counts_boundaries_and_last_window():
    dm = module(toy_frame(20))  # train [0, 10), val [10, 15), test [15, 20)
    assert [t for _, t in dm.windows["train"]] == [3, 4, 5, 6, 7, 8]
    assert [t for _, t in dm.windows["val"]] == [10, 11, 12, 13]
    assert [t for _, t in dm.windows["test"]] == [15, 16, 17, 18]
    values = toy_frame(20)["y"].to_numpy(dtype=np.float32)
    last = dm.dataset("test")[3]
    assert last["y"][:, 0].tolist() == values[18:20].tolist()  # ends on the series' last step
    assert last["history"][:, 0].tolist() == values[15:18].tolist()
    normalizer = dm.normalizer(0)
    expected_x = (torch.tensor(values[15:18]) - normalizer.shift[0]) / normalizer.scale[0]
    torch.testing.assert_close(last["x"][:, 0], expected_x)
    assert last["lengths"] == 3


def test_stride_and_many_series():
    dm = module(toy_frame(20, series=2), series_column="id", stride=2)
    assert dm.series_names == ["s0", "s1"]
    assert dm.windows["train"] == [(0, 4), (0, 6), (0, 8), (1, 4), (1, 6), (1, 8)]
    assert len(dm.dataset("test")) == 4


def test_split_by_date():
    frame = toy_frame(20)
    frame["t"] = pd.date_range("2020-01-01", periods=20, freq="D")
    dm = module(frame, val_start="2020-01-11", test_start="2020-01-16")
    assert dm.parts(dm._series(dm._table())[0]) == (10, 15, 20)
    assert [t for _, t in dm.windows["test"]] == [15, 16, 17, 18]


def test_seasonal_naive_repeats_the_last_season():
    history = torch.arange(10.0)[:, None]
    assert seasonal_naive(history, 5, 3)[:, 0].tolist() == [7, 8, 9, 7, 8]
    assert seasonal_naive(history, 3, 1)[:, 0].tolist() == [9, 9, 9]


# --- no leakage ------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["ffill", "interpolate"])
@pytest.mark.parametrize("per_series", [False, True])
def test_nothing_after_the_training_cutoff_changes_training(missing, per_series):
    frame = toy_frame(40, series=2)
    frame.loc[[5, 19, 45], "y"] = np.nan  # gaps, one on the last step of series s0's train part
    settings = {"series_column": "id", "missing": missing, "per_series": per_series}
    before = module(frame, **settings)
    assert before.parts(before._series(before._table())[0]) == (20, 30, 40)
    changed = frame.copy()
    after_cutoff = changed["t"] >= 20
    changed.loc[after_cutoff, "y"] = 1e6 * np.random.default_rng(0).random(after_cutoff.sum())
    changed.loc[after_cutoff, "c"] = -5.0
    after = module(changed, **settings)
    for old, new in zip(before.normalizers, after.normalizers, strict=True):
        torch.testing.assert_close(old.shift, new.shift)
        torch.testing.assert_close(old.scale, new.scale)
    for old, new in zip(before.series, after.series, strict=True):
        torch.testing.assert_close(old.mase_scale, new.mase_scale)
    old_train, new_train = before.dataset("train"), after.dataset("train")
    assert len(old_train) == len(new_train) > 0
    for i in range(len(old_train)):
        for key in ("x", "y", "history", "naive", "seasonal_naive"):
            torch.testing.assert_close(old_train[i][key], new_train[i][key])
    # the changed values do reach validation and test windows
    assert not torch.equal(before.dataset("test")[0]["y"], after.dataset("test")[0]["y"])


def test_missing_values_are_an_error_by_default_naming_line_and_column(tmp_path):
    frame = toy_frame(20)
    frame.loc[7, "c"] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"gaps\.csv has missing values at line 9 column 'c'"):
        module(file=str(path), covariate_columns=["c"])


def test_interpolate_stays_inside_each_part():
    frame = toy_frame(20)
    frame.loc[9, "y"] = np.nan  # last step of the train part: only train values may fill it
    dm = module(frame, missing="interpolate")
    assert dm.series[0].raw[9, 0] == pytest.approx(frame.loc[8, "y"])  # carried, not read from t=10


# --- metrics in original units ---------------------------------------------------------------
class Constant(torch.nn.Module):
    """An encoder whose output is ignored: the head's bias alone makes the forecast."""

    output_size = 1

    def forward(self, x, lengths):
        return torch.zeros(len(x), 1)


def test_metrics_and_baselines_equal_a_hand_computation():
    values = np.array([5.0, 7, 6, 8, 9, 7, 10, 12, 11, 13, 12, 15, 14, 16, 18, 17, 19, 21, 20, 22])
    frame = pd.DataFrame({"t": np.arange(20), "y": values})
    dm = module(frame, lookback=4, horizon=2, season_length=2)
    model = SequenceRegressor(
        Constant(),
        optimizer=torch.optim.SGD,
        metrics=["mae", "rmse", "mape", "smape", "mase"],
        baselines=["naive", "seasonal_naive"],
        horizon=2,
    )
    with torch.no_grad():
        model.head[1].weight.zero_()
        model.head[1].bias.fill_(0.5)  # normalised units
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]

    mean, std = values[:10].mean(), values[:10].std()  # train part only, population std
    forecast = 0.5 * std + mean
    origins = [15, 16, 17, 18]
    actual = np.array([values[t : t + 2] for t in origins])
    naive = np.array([[values[t - 1]] * 2 for t in origins])
    seasonal = np.array([[values[t - 2], values[t - 1]] for t in origins])
    mase_scale = np.abs(values[2:10] - values[:8]).mean()

    def expected(pred):
        err = pred - actual
        return {
            "mae": np.abs(err).mean(),
            "rmse": np.sqrt((err**2).mean()),
            "mape": (np.abs(err) / np.abs(actual)).mean(),
            "smape": (2 * np.abs(err) / (np.abs(actual) + np.abs(pred))).mean(),
            "mase": np.abs(err).mean() / mase_scale,
        }

    for suffix, pred in (("", np.full_like(actual, forecast)), ("_naive", naive)):
        for name, value in expected(pred).items():
            assert metrics[f"test/{name}{suffix}"] == pytest.approx(value, rel=1e-5), name
    for name, value in expected(seasonal).items():
        assert metrics[f"test/{name}_seasonal_naive"] == pytest.approx(value, rel=1e-5), name


# --- bad tables and settings -----------------------------------------------------------------
def _csv(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: f.drop(columns="y"),
            r"series\.csv has no column 'y' \(columns: \['id', 't', 'c'\]\)",
        ),
        (
            lambda f: f.astype({"y": object}).assign(y=lambda d: d.y.where(d.index != 4, "12,5kg")),
            r"series\.csv line 6: column 'y' holds '12,5kg', not a finite number",
        ),
        (
            lambda f: f.assign(t=lambda d: d.t.where(d.index != 6, 2.0)),
            r"series\.csv line 8: time 2\.0 precedes the time on line 7",
        ),
        (
            lambda f: f.assign(t=lambda d: d.t.where(d.index != 6, 5.0)),
            r"series\.csv line 8: time 5\.0 repeats the time on line 7",
        ),
        (lambda f: f.iloc[:4], r"series\.csv has 4 time steps, fewer than lookback \+ horizon = 5"),
        (lambda f: f.assign(t="soon"), r"series\.csv line 2: time column 't' holds 'soon'"),
    ],
)
def test_bad_table_gets_one_clear_error(tmp_path, edit, message):
    path = _csv(tmp_path, edit(toy_frame(20)))
    with pytest.raises(DataError, match=message):
        module(file=path)


def test_duplicate_time_names_the_series(tmp_path):
    frame = toy_frame(20, series=2)
    frame.loc[25, "t"] = frame.loc[24, "t"]
    with pytest.raises(DataError, match=r"line 27: time 4\.0 of series 's1' repeats .* line 26"):
        module(file=_csv(tmp_path, frame), series_column="id")


# two series one after the other, read as one: the second's first time goes back
STACKED = (
    r"line 22: time 0\.0 precedes the time on line 21; times must be unique and sorted "
    r"\(per series\)"
)


@pytest.mark.parametrize(
    ("edit", "hint"),
    [
        (lambda f: f, "; if the file holds several series, set data.series_column=id"),
        (
            lambda f: f.assign(shop=f.id.str.upper()),
            "; if the file holds several series, set data.series_column=id or "
            "data.series_column=shop",
        ),
        (
            # one name per series, so each name with the time is unique: a key; the floats of c
            # are equal between the series (not unique with the time), and a per-row number is
            # unique but names no series
            lambda f: f.drop(columns="id").assign(row=range(len(f))),
            "; if the file holds several series, add a column naming each and set "
            "data.series_column to it (none of c, row is unique together with the time)",
        ),
        (
            lambda f: f.rename(columns={"id": "store name"}),
            "; if the file holds several series, set 'data.series_column=store name'",
        ),
    ],
)
def test_repeated_times_without_a_series_column_suggest_one(tmp_path, edit, hint):
    frame = edit(toy_frame(20, series=2))
    with pytest.raises(DataError, match=STACKED) as refused:
        module(file=_csv(tmp_path, frame))
    assert str(refused.value).endswith("(per series)" + hint)


def test_repeated_times_in_a_data_frame_or_a_prediction_input(tmp_path):
    with pytest.raises(
        DataError, match=r"if the table holds several series, set data\.series_column=id$"
    ):
        module(toy_frame(20, series=2))
    # the checkpoint's series column is fixed: prediction input gets no suggestion
    fitted = module(toy_frame(20))
    with pytest.raises(DataError, match=STACKED + "$"):
        fitted.setup_predict(_csv(tmp_path, toy_frame(20, series=2)))


def test_a_csv_and_the_shipped_series_together_name_the_csv_experiment():
    with pytest.raises(ConfigError) as refused:
        ForecastDataModule(file="sales.csv", source="co2")
    assert str(refused.value) == (
        "data.file and data.source=co2 are both set; to forecast your own CSV use "
        "experiment=forecast_csv data.file=<your.csv>, or add data.source=null"
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"horizon": 0}, r"data\.horizon must be >= 1, got 0"),
        ({"lookback": -1}, r"data\.lookback must be >= 1, got -1"),
        ({"season_length": 9}, r"data\.season_length must lie in \[1, lookback=3\]"),
        ({"test_fraction": 0.0}, r"data\.val_fraction and data\.test_fraction must be > 0"),
        ({"normalize": "robust"}, r"unknown normalisation 'robust'"),
        ({"missing": "drop"}, r"unknown data\.missing 'drop'"),
    ],
)
def test_bad_setting_gets_one_clear_error(setting, message):
    with pytest.raises(ConfigError, match=message):
        module(toy_frame(20), **setting)


def test_part_without_windows_is_named():
    with pytest.raises(DataError, match=r"no val window fits"):
        module(toy_frame(20), val_fraction=0.05, horizon=2)


def test_shipped_co2_series_loads_through_the_config():
    cfg = OmegaConf.load("conf/data/forecast.yaml")
    cfg.seed, cfg.cache_dir = 0, None  # no paths.log_dir outside a composed config
    dm = instantiate(cfg)
    dm.setup("fit")
    raw = dm.series[0].raw
    assert len(raw) == 2284 and not torch.isnan(raw).any()  # gaps forward-filled
    assert len(dm.windows["test"]) == 343 - 26 + 1

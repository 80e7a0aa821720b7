"""Future-known covariates, static columns and calendar features of the forecaster's data: the
window layout (history, then the horizon's known inputs and ``is_future``), causality, the
refusals, and what reaches the checkpoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data.covariates import KnownInputs, calendar_features
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.utils.errors import ConfigError, DataError


def _frame(n: int = 60, seed: int = 0, series: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(series):
        promo = (rng.random(n) < 0.4).astype(float)
        parts.append(
            pd.DataFrame(
                {
                    "date": pd.date_range("2021-01-01", periods=n, freq="D"),
                    "store": f"s{s}",
                    "y": 10 + 5 * promo + rng.normal(size=n),
                    "price": rng.normal(size=n),
                    "promo": promo,
                    "size": 100.0 * (s + 1),
                    "kind": "big" if s % 2 else "small",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _module(frame: pd.DataFrame, **kwargs) -> ForecastDataModule:
    settings_ = {
        "frame": frame,
        "time_column": "date",
        "target_columns": ["y"],
        "lookback": 6,
        "horizon": 3,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
    }
    return ForecastDataModule(**{**settings_, **kwargs})


def test_future_inputs_follow_the_history_with_last_values_and_is_future():
    frame = _frame()
    module = _module(
        frame,
        covariate_columns=["price"],
        future_covariate_columns=["promo"],
        calendar=["weekday"],
        normalize="none",
    )
    module.setup("fit")
    # y, price, promo, sin and cos of the weekday, is_future
    assert module.model_settings()["encoder"]["input_size"] == 6
    item = module.dataset("train")[0]
    t = item["origin"]
    x = item["x"]
    assert x.shape == (6 + 3, 6) and item["lengths"] == 9
    history, ahead = x[:6], x[6:]
    raw = frame[["y", "price", "promo"]].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(history[:, :3].numpy(), raw[t - 6 : t])
    # targets and past covariates hold their last observed value; promo its future value
    np.testing.assert_array_equal(ahead[:, 0].numpy(), np.full(3, raw[t - 1, 0]))
    np.testing.assert_array_equal(ahead[:, 1].numpy(), np.full(3, raw[t - 1, 1]))
    np.testing.assert_array_equal(ahead[:, 2].numpy(), raw[t : t + 3, 2])
    weekday = calendar_features(frame["date"].to_numpy()[t - 6 : t + 3], ["weekday"])
    np.testing.assert_allclose(x[:, 3:5].numpy(), weekday, atol=1e-6)
    assert x[:, 5].tolist() == [0.0] * 6 + [1.0] * 3
    # the baselines and the history still read the lookback steps only
    assert item["history"].shape == (6, 1)
    assert item["naive"].tolist() == [[raw[t - 1, 0]]] * 3


def test_without_known_columns_windows_are_the_history_alone():
    module = _module(_frame(), covariate_columns=["price"])
    module.setup("fit")
    item = module.dataset("val")[0]
    assert item["x"].shape == (6, 2) and item["lengths"] == 6
    assert module.model_settings()["encoder"]["input_size"] == 2
    assert "static_categories" not in module.state_dict()


def test_calendar_features_are_sin_cos_pairs_of_their_cycles():
    stamps = ["2021-01-01 06:00", "2021-07-02 18:45", "2020-12-31 00:00", "2014-06-15 00:00"]
    times = pd.to_datetime(stamps).to_numpy()
    names = ["month", "weekday", "day_of_month", "day_of_year", "week_of_year", "hour"]
    features = calendar_features(times, names)
    angles = np.arctan2(features[:, 0::2], features[:, 1::2]) % (2 * np.pi) / (2 * np.pi)
    # 1 January 2021: a Friday, ISO week 53 of 2020 (a year of 53 weeks)
    np.testing.assert_allclose(angles[0], [0, 4 / 7, 0, 0, 52 / 53, 6 / 24], atol=1e-9)
    np.testing.assert_allclose(
        angles[1], [6 / 12, 4 / 7, 1 / 31, 182 / 365, 25 / 52, 18.75 / 24], atol=1e-9
    )
    # 2014 has 52 ISO weeks (its 29 December already lies in week 1 of 2015)
    np.testing.assert_allclose(angles[3][4], 23 / 52, atol=1e-9)
    np.testing.assert_allclose(angles[2][3], 365 / 366, atol=1e-9)  # 2020: a leap year
    np.testing.assert_allclose(np.hypot(features[:, 0::2], features[:, 1::2]), 1.0)


def test_static_columns_numeric_normalised_others_one_hot():
    frame = _frame(series=3)
    module = _module(frame, series_column="store", static_columns=["size", "kind"])
    module.setup("fit")
    assert module.known.categories == {"kind": ["big", "small"]}
    assert module.model_settings()["encoder"]["input_size"] == 1 + 1 + 2
    for s, (size, kind) in enumerate([(100, "small"), (200, "big"), (300, "small")]):
        x = module.series[s].inputs
        assert torch.allclose(x[:, 1], torch.full_like(x[:, 1], (size - 200) / np.sqrt(20000 / 3)))
        one_hot = [float(kind == "big"), float(kind == "small")]
        normalizer = module.normalizers[0]
        raw = x[:, 2:] * normalizer.scale[2:] + normalizer.shift[2:]
        assert torch.allclose(raw, torch.tensor([one_hot] * len(x)), atol=1e-6)
    assert module.state_dict()["static_categories"] == {"kind": ["big", "small"]}


def test_per_series_statistics_keep_static_columns_apart():
    frame = _frame(series=2)
    module = _module(frame, series_column="store", static_columns=["size"], per_series=True)
    module.setup("fit")
    first, second = (module.series[s].inputs[0, 1].item() for s in (0, 1))
    assert first == pytest.approx(-1.0) and second == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("edit", "kwargs", "message"),
    [
        (
            lambda f: f.assign(size=f["size"].where(f.index != 60, 5.0).where(f.index != 61, 7.0)),
            {"static_columns": ["size"]},
            "data frame series 's1': static column 'size' holds 5.0 on row 60 but 7.0 on "
            "row 61; give each series one value",
        ),
        (
            lambda f: f.assign(kind=f["kind"].where(f.index != 3)),
            {"static_columns": ["kind"]},
            "data frame row 3: static column 'kind' is empty; give every row of series 's0' "
            "its value",
        ),
        (
            lambda f: f.assign(promo=f["promo"].where(f.index != 4)),
            {"future_covariate_columns": ["promo"], "missing": "ffill"},
            "data frame row 4: future covariate 'promo' is empty; give it a value on every row "
            "(it is known in advance)",
        ),
        (
            lambda f: f.iloc[:61],  # series s1 has one row: its static value is that row's
            {"static_columns": ["size"]},
            "data frame series 's1' has 1 time steps, fewer than lookback + horizon = 9",
        ),
        (
            lambda f: f,
            {"static_columns": ["colour"]},
            "data frame has no column 'colour' (columns: ['date', 'store', 'y', 'price', "
            "'promo', 'size', 'kind']); fix the file or data.static_columns",
        ),
    ],
)
def test_bad_covariate_data_is_refused_in_one_line(edit, kwargs, message):
    module = _module(edit(_frame(series=2)), series_column="store", **kwargs)
    with pytest.raises(DataError) as refused:
        module.setup("fit")
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_bad_covariate_settings_are_refused_in_one_line():
    with pytest.raises(ConfigError) as unknown:
        _module(_frame(), calendar=["season"])
    assert str(unknown.value) == (
        "unknown data.calendar feature 'season'; choose from month, weekday, day_of_month, "
        "day_of_year, week_of_year, hour"
    )
    with pytest.raises(ConfigError, match=r"^data.calendar names 'month' twice"):
        _module(_frame(), calendar=["month", "month"])
    with pytest.raises(ConfigError, match=r"^column 'promo' is named in two data settings"):
        _module(_frame(), covariate_columns=["promo"], future_covariate_columns=["promo"])
    numbers = _frame().assign(date=np.arange(60))
    with pytest.raises(ConfigError) as refused:
        _module(numbers, calendar=["month"]).setup("fit")
    assert str(refused.value) == (
        "data.calendar=['month'] needs dates, but data frame time column 'date' holds numbers; "
        "set data.calendar=[] or write the times as dates"
    )


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    length=st.integers(20, 50),
    lookback=st.integers(1, 6),
    horizon=st.integers(1, 4),
)
def test_no_input_reads_what_is_unknown_at_the_origin(data, length, lookback, horizon):
    """Change every target and past covariate at and after a window's origin, and every future
    covariate beyond the horizon (not known at the origin): no input of the window changes;
    a future covariate inside the horizon does change it."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.normal(size=(length, 3)) * 10  # target, past covariate, future covariate
    holes = data.draw(st.lists(st.integers(1, length - 1), max_size=length // 3))
    values[holes, data.draw(st.integers(0, 1))] = np.nan
    index = data.draw(st.integers(0, 10**6))

    def window(series: np.ndarray) -> dict:
        frame = pd.DataFrame(
            {
                "t": pd.date_range("2022-01-01", periods=length, freq="D"),
                "y": series[:, 0],
                "p": series[:, 1],
                "f": series[:, 2],
            }
        )
        module = _module(
            frame,
            time_column="t",
            covariate_columns=["p"],
            future_covariate_columns=["f"],
            calendar=["weekday", "day_of_year"],
            lookback=lookback,
            horizon=horizon,
            normalize="none",  # inputs equal raw values: statistics may change with the data
            missing="interpolate",
        )
        try:
            module.setup("fit")
        except DataError:  # e.g. a series too short for its parts; nothing to check
            return {}
        windows = [w for split in ("train", "val", "test") for w in module.windows[split]]
        dataset = module.dataset("train")
        dataset.windows = windows
        return dataset[index % len(windows)]

    before = window(values)
    if not before:
        return
    origin = before["origin"]
    changed = values.copy()
    changed[origin:, :2] = rng.normal(size=changed[origin:, :2].shape) * 1000
    changed[origin:, 1][rng.random(length - origin) < 0.3] = np.nan  # gaps may move too
    changed[origin + horizon :, 2] = rng.normal(size=changed[origin + horizon :, 2].shape) * 1000
    after = window(changed)
    assert after["origin"] == origin
    torch.testing.assert_close(after["x"], before["x"], rtol=0, atol=0)
    torch.testing.assert_close(after["history"], before["history"], rtol=0, atol=0)
    assert not torch.isnan(before["x"]).any()
    known = changed.copy()
    step = origin + data.draw(st.integers(0, horizon - 1))
    known[step, 2] += 1.0
    assert not torch.equal(window(known)["x"], after["x"])


def test_a_restored_model_keeps_its_categories_and_refuses_what_it_never_saw():
    """The checkpoint's categories, not the new data's, give the one-hot columns; a category or a
    text the model never saw in a column is refused in one line naming the series."""
    frame = _frame(series=2)
    trained = _module(frame, series_column="store", static_columns=["kind", "size"])
    trained.setup("fit")
    state = trained.state_dict()

    def restored(data: pd.DataFrame) -> ForecastDataModule:
        module = _module(data, series_column="store", static_columns=["kind", "size"])
        module.load_state_dict(state)
        return module

    one_kind = restored(frame.assign(kind="small"))
    one_kind.setup("fit")
    assert one_kind.known.categories == {"kind": ["big", "small"]}
    torch.testing.assert_close(one_kind.series[1].raw[:, 1:3], trained.series[0].raw[:, 1:3])
    with pytest.raises(DataError) as unseen:
        restored(frame.assign(kind="medium")).setup("fit")
    assert str(unseen.value) == (
        "data frame series 's0': static column 'kind' holds 'medium', a category the model never "
        "saw (it knows ['big', 'small']); forecast it with a model trained on it"
    )
    with pytest.raises(DataError) as text:
        restored(frame.assign(size="large")).setup("fit")
    assert str(text.value) == (
        "data frame series 's0': static column 'size' holds 'large', but the model was trained "
        "on numbers in it; give a number"
    )
    older = _module(frame)  # a checkpoint from before static columns has no categories
    older.load_state_dict({k: v for k, v in state.items() if k != "static_categories"})
    assert older.known.categories == {}


def test_a_value_that_is_not_a_finite_number_makes_a_static_column_categorical():
    frame = _frame(series=2)
    frame["size"] = np.where(frame["store"] == "s0", np.inf, 3.0)
    module = _module(frame, series_column="store", static_columns=["size"])
    module.setup("fit")
    assert module.known.categories == {"size": ["3.0", "inf"]}
    assert np.isfinite(module.series[0].inputs.numpy()).all()


def test_future_covariates_keep_their_places_among_the_inputs():
    known = KnownInputs.of(["y", "price", "promo", "holiday"], ["promo", "holiday"], [], ["hour"])
    assert known.future == {2: "promo", 3: "holiday"}
    assert known.columns == (2, 3, 4, 5) and known.width == 3


def _fitted(frame: pd.DataFrame, **kwargs) -> ForecastDataModule:
    module = _module(frame, normalize="none", **kwargs)
    module.setup("fit")
    return module


def test_prediction_input_reads_the_rows_after_the_last_target(tmp_path):
    frame = _frame()
    module = _fitted(frame, covariate_columns=["price"], future_covariate_columns=["promo"])
    rows = frame[["date", "y", "price", "promo"]].iloc[:10].copy()
    rows.loc[7:, ["y", "price"]] = np.nan  # three rows ahead: the horizon's promotion plan
    rows.loc[7:, "promo"] = [1.0, 0.0, 1.0]
    rows.to_csv(tmp_path / "plan.csv", index=False)
    module.setup_predict(str(tmp_path / "plan.csv"))
    [history] = module.predict_series
    assert len(history.times) == 7 and history.times[-1] == rows["date"].iloc[6]
    x = module.dataset("predict")[0]["x"]
    assert x.shape == (9, 4)
    expected = rows[["y", "price", "promo"]].to_numpy(dtype=np.float32)[1:7]
    np.testing.assert_array_equal(x[:6, :3].numpy(), expected)
    assert x[6:, 2].tolist() == [1.0, 0.0, 1.0]  # the plan, not the last promotion
    assert x[6:, 0].tolist() == [expected[-1, 0]] * 3 and x[6:, 1].tolist() == [expected[-1, 1]] * 3
    assert x[:, 3].tolist() == [0.0] * 6 + [1.0] * 3
    rows.iloc[:9].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError) as short:
        module.setup_predict(str(tmp_path / "short.csv"))
    assert str(short.value) == (
        f"{tmp_path / 'short.csv'}: the model reads future covariates ['promo'] over the 3 steps "
        "after the last target value (line 8), but 2 rows follow it; add the 3 rows to "
        "forecast, targets empty and ['promo'] filled"
    )
    rows.assign(promo=rows["promo"].where(rows.index != 8)).to_csv(
        tmp_path / "gap.csv", index=False
    )
    with pytest.raises(DataError, match=r"gap\.csv line 10: future covariate 'promo' is empty"):
        module.setup_predict(str(tmp_path / "gap.csv"))
    rows.iloc[3:].to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(DataError) as few:
        module.setup_predict(str(tmp_path / "few.csv"))
    assert str(few.value) == (
        f"{tmp_path / 'few.csv'} has 4 rows with a target value; the model reads the last "
        "lookback = 6 steps"
    )


def test_calendar_features_ahead_come_from_the_next_time_stamps(tmp_path):
    frame = _frame()
    module = _fitted(frame, calendar=["weekday"])
    frame[["date", "y"]].iloc[:8].to_csv(tmp_path / "history.csv", index=False)
    module.setup_predict(str(tmp_path / "history.csv"))
    x = module.dataset("predict")[0]["x"]
    days = pd.date_range(frame["date"].iloc[2], periods=9, freq="D").to_numpy()
    np.testing.assert_allclose(x[:, 1:3].numpy(), calendar_features(days, ["weekday"]), atol=1e-6)
    assert x[6:, 0].tolist() == [frame["y"].iloc[7].astype(np.float32)] * 3


def test_without_known_inputs_the_prediction_input_is_history_to_its_last_row(tmp_path):
    frame = _frame()
    module = _fitted(frame, missing="ffill")
    rows = frame[["date", "y"]].iloc[:9].copy()
    rows.loc[7:, "y"] = np.nan  # filled forward as before: the forecast starts after row 8
    rows.to_csv(tmp_path / "history.csv", index=False)
    module.setup_predict(str(tmp_path / "history.csv"))
    assert len(module.predict_series[0].times) == 9
    x = module.dataset("predict")[0]["x"]
    assert x.shape == (6, 1) and x[-1, 0] == np.float32(frame["y"].iloc[6])


def _refused(module: ForecastDataModule, path) -> str:
    with pytest.raises(DataError) as refused:
        module.setup_predict(str(path))
    return str(refused.value)


def test_prediction_input_refusals_name_the_file_and_the_fix(tmp_path):
    frame = _frame(series=2)
    module = _fitted(frame, series_column="store", future_covariate_columns=["promo"])
    assert _refused(module, tmp_path / "x.ts") == (
        f"{tmp_path / 'x.ts'} is a .ts file, but this checkpoint is a forecasting model: input "
        "must be a CSV with columns ['date', 'y', 'promo']"
    )
    module.max_file_mb = 1e-6
    frame.to_csv(tmp_path / "big.csv", index=False)
    assert _refused(module, tmp_path / "big.csv").endswith(
        "; give a shorter file (the limit was stored with this model)"
    )
    module.max_file_mb = 1024
    assert _refused(module, tmp_path / "absent.csv").endswith("; check input")
    rows = frame[frame["store"] == "s1"].iloc[:9].assign(y=np.nan)
    rows.to_csv(tmp_path / "no_target.csv", index=False)
    assert _refused(module, tmp_path / "no_target.csv") == (
        f"{tmp_path / 'no_target.csv'} series 's1' has 0 rows with a target value; the model "
        "reads the last lookback = 6 steps"
    )
    plain = _fitted(frame, series_column="store")
    frame.iloc[:4].to_csv(tmp_path / "short.csv", index=False)
    assert _refused(plain, tmp_path / "short.csv") == (
        f"{tmp_path / 'short.csv'} series 's0' has 4 rows; the model reads the last "
        "lookback = 6 steps"
    )


def test_prediction_input_of_a_model_per_series(tmp_path):
    frame = _frame(series=2)
    module = _fitted(frame, series_column="store", per_series=True, missing="interpolate")
    module.normalizers[1].shift += 1.0  # tell the two apart
    rows = frame[frame["store"] == "s1"].iloc[:6].copy()
    rows.loc[rows.index[2], "y"] = np.nan  # filled between its neighbours
    rows.to_csv(tmp_path / "s1.csv", index=False)
    module.setup_predict(str(tmp_path / "s1.csv"))
    [data] = module.predict_data
    assert data.normalizer is module.normalizers[1]
    assert module.predict_series[0].name == "s1"
    assert len(module.predict_series[0].rows) == 6
    y = rows["y"].to_numpy()
    assert data.raw[2, 0].item() == pytest.approx((y[1] + y[3]) / 2, rel=1e-6)
    rows.assign(store="s9").to_csv(tmp_path / "s9.csv", index=False)
    assert _refused(module, tmp_path / "s9.csv") == (
        f"{tmp_path / 's9.csv'}: series 's9' was not in the training data, and this model "
        "normalises per series (data.per_series=true)"
    )


def test_prediction_input_keeps_the_trained_categories_and_names_the_series(tmp_path):
    frame = _frame(series=2)
    module = _fitted(frame, series_column="store", static_columns=["kind"])
    frame[frame["store"] == "s0"].to_csv(tmp_path / "small.csv", index=False)
    module.setup_predict(str(tmp_path / "small.csv"))
    assert module.known.categories == {"kind": ["big", "small"]}  # not refitted on one kind
    assert module.predict_data[0].raw[0, 1:].tolist() == [0.0, 1.0]
    frame.assign(kind="tiny").to_csv(tmp_path / "tiny.csv", index=False)
    assert _refused(module, tmp_path / "tiny.csv").startswith(
        f"{tmp_path / 'tiny.csv'} series 's0': static column 'kind' holds 'tiny', a category"
    )


def test_rows_after_the_horizon_are_not_read(tmp_path):
    frame = _frame()
    module = _fitted(frame, future_covariate_columns=["promo"])
    rows = frame[["date", "y", "promo"]].iloc[:11].copy()
    rows.loc[7:, "y"] = np.nan
    rows.loc[10, "promo"] = np.nan  # a fourth row ahead, beyond the horizon of 3
    rows.to_csv(tmp_path / "plan.csv", index=False)
    module.setup_predict(str(tmp_path / "plan.csv"))
    assert module.dataset("predict")[0]["x"].shape == (9, 3)


def test_prediction_input_messages_name_the_series_line_and_column(tmp_path):
    frame = _frame(series=2)
    module = _fitted(frame, series_column="store", future_covariate_columns=["promo"])
    rows = frame[frame["store"] == "s1"].iloc[:8].copy()
    rows.loc[rows.index[-1], "y"] = np.nan  # one row ahead of three
    rows.to_csv(tmp_path / "s1.csv", index=False)
    assert _refused(module, tmp_path / "s1.csv").startswith(
        f"{tmp_path / 's1.csv'} series 's1': the model reads future covariates ['promo']"
    )
    ahead = pd.concat([rows.iloc[:7], rows.iloc[:3].assign(y=np.nan)])  # three rows ahead
    ahead["date"] = pd.date_range(rows["date"].iloc[0], periods=10)
    ahead.to_csv(tmp_path / "ahead.csv", index=False)
    module.setup_predict(str(tmp_path / "ahead.csv"))  # one normaliser for every series
    assert module.predict_data[0].normalizer is module.normalizers[0]
    strict = _fitted(frame, series_column="store", missing="error")
    rows.iloc[:7].assign(y=lambda f: f["y"].where(f.index != rows.index[2])).to_csv(
        tmp_path / "gap.csv", index=False
    )
    assert _refused(strict, tmp_path / "gap.csv") == (
        f"{tmp_path / 'gap.csv'} has missing values at line 4 column 'y'; fill them or set "
        "data.missing=ffill or data.missing=interpolate"
    )
    dated = _fitted(frame, series_column="store", calendar=["weekday"])
    rows.iloc[:7].assign(date=range(7)).to_csv(tmp_path / "numbers.csv", index=False)
    with pytest.raises(ConfigError) as numbers:
        dated.setup_predict(str(tmp_path / "numbers.csv"))
    assert str(numbers.value).startswith(
        f"data.calendar=['weekday'] needs dates, but {tmp_path / 'numbers.csv'} time column "
        "'date' holds numbers"
    )

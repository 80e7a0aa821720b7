"""User data is taken literally and never silently distorted: values beyond float32 are refused
in one line, metrics never overflow, gap filling never reads the future, a repeated column is
refused, labels never reach the config resolver, and a data set name is not a path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.checkpoint import load_checkpoint
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.data.export import export
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.eval import evaluate
from rnnlab.predict import predict
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import FAST, TS_HEADER, compose_config


def _csv(path, values, extra_header: str = "") -> str:
    rows = [f"date,co2{extra_header}"]
    rows += [f"2000-01-{i + 1:02d},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _forecast(file: str, **kwargs) -> ForecastDataModule:
    settings_ = {"lookback": 4, "horizon": 2, "time_column": "date", "target_columns": ["co2"]}
    return ForecastDataModule(file=file, **{**settings_, **kwargs})


def test_csv_value_beyond_float32_is_refused_naming_line_and_column(tmp_path):
    values = [300.0 + i for i in range(28)]
    values[5] = 3e38  # finite in float64, inf in float32
    module = _forecast(_csv(tmp_path / "s.csv", values))
    with pytest.raises(DataError) as refused:
        module.setup("fit")
    assert str(refused.value).startswith(
        f"{tmp_path / 's.csv'} line 7: column 'co2' holds 3e+38, beyond what float32 training "
        "can represent"
    )


def test_ts_value_beyond_float32_is_not_called_nan(tmp_path):
    rows = ["1,2,3:a", "2,3,4,5:a", "3,2,1:a", "1,1,2:b", "5,1e308,3:b", "2,2,2:b"]
    (tmp_path / "train.ts").write_text(TS_HEADER + "\n".join(rows) + "\n")
    (tmp_path / "test.ts").write_text(TS_HEADER + "1,2:a\n2,1:b\n")
    module = ClassificationDataModule(
        train_file=str(tmp_path / "train.ts"), test_file=str(tmp_path / "test.ts")
    )
    with pytest.raises(DataError, match=r"sample 4 has value 1e\+308 at time step 1, channel 0, "):
        module.setup("fit")


def test_repeated_csv_column_is_refused(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("date,co2,co2\n" + "".join(f"2000-01-{d:02d},1,2\n" for d in range(1, 20)))
    with pytest.raises(DataError, match=r"s\.csv has column 'co2' more than once; rename"):
        _forecast(str(path)).setup("fit")
    frame = pd.DataFrame([[1, 2, 3]], columns=["date", "co2", "co2"])
    module = ForecastDataModule(frame=frame, time_column="date", target_columns=["co2"])
    with pytest.raises(DataError, match="has column 'co2' more than once"):
        module.setup("fit")


def test_data_set_name_is_not_a_path():
    for name in ("../../tmp/x", "/etc/passwd", "x/y", ".hidden"):
        with pytest.raises(ConfigError, match="is not an archive data set name"):
            ClassificationDataModule(name=name)


def test_metrics_near_float32_range_stay_finite_and_scale_free(tmp_path):
    """Errors of 1e35-scaled CO2 square to 1e72: float32 metrics said inf MAE and 0 MASE."""
    export("co2", tmp_path / "co2.csv")
    plain = pd.read_csv(tmp_path / "co2.csv")
    scaled = plain.assign(co2=plain["co2"] * 1e35)
    scaled.to_csv(tmp_path / "scaled.csv", index=False)
    results = {}
    for name in ("co2", "scaled"):
        cfg = compose_config(
            "train",
            [
                *FAST,
                "experiment=forecast_csv",
                f"data.file={tmp_path / name}.csv",
                "data.time_column=date",
                "data.target_columns=[co2]",
                "data.lookback=60",
                "data.horizon=8",
                "trainer.max_epochs=1",
                "logger=none",
            ],
            tmp_path / name,
        )
        results[name] = train(cfg)
    plain_m, scaled_m = results["co2"], results["scaled"]
    for key in ("test/mae", "test/rmse", "test/mase", "test/mae_seasonal_naive"):
        assert np.isfinite(scaled_m[key]) and scaled_m[key] > 0, key
    assert scaled_m["test/mase_seasonal_naive"] == pytest.approx(
        plain_m["test/mase_seasonal_naive"], rel=1e-5
    )
    assert scaled_m["test/mae_seasonal_naive"] == pytest.approx(
        plain_m["test/mae_seasonal_naive"] * 1e35, rel=1e-5
    )


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    length=st.integers(12, 40),
    lookback=st.integers(1, 6),
    horizon=st.integers(1, 3),
)
def test_interpolated_inputs_never_read_at_or_after_the_origin(data, length, lookback, horizon):
    """Change every value at or after a window's origin (and where the gaps are there): the
    window's inputs and baseline history stay exactly the same."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.normal(size=(length, 2)) * 10
    holes = data.draw(st.lists(st.integers(1, length - 1), max_size=length // 2))
    values[holes, data.draw(st.integers(0, 1))] = np.nan

    def window(series: np.ndarray, index: int) -> dict:
        frame = pd.DataFrame({"t": np.arange(length), "a": series[:, 0], "b": series[:, 1]})
        module = ForecastDataModule(
            frame=frame,
            time_column="t",
            target_columns=["a"],
            covariate_columns=["b"],
            lookback=lookback,
            horizon=horizon,
            val_fraction=0.2,
            test_fraction=0.2,
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
        return dataset[index % len(windows)] | {"origin": windows[index % len(windows)][1]}

    index = data.draw(st.integers(0, 10**6))
    before = window(values, index)
    if not before:
        return
    origin = before["origin"]
    changed = values.copy()
    future = rng.normal(size=changed[origin:].shape) * 1000
    future[rng.random(future.shape) < 0.3] = np.nan  # gaps may move too
    changed[origin:] = future
    changed[origin:, 0][np.isnan(changed[origin:, 0])] = 1.0  # targets stay fillable
    after = window(changed, index)
    if not after or after["origin"] != origin:
        return
    torch.testing.assert_close(after["x"], before["x"], rtol=0, atol=0)
    torch.testing.assert_close(after["history"], before["history"], rtol=0, atol=0)
    assert not torch.isnan(before["x"]).any()


def test_interpolation_fills_between_past_observations_and_holds_the_last():
    from rnnlab.data.forecast import causal_fill

    observed = np.array([[1.0], [np.nan], [3.0], [np.nan], [np.nan], [100.0]])
    filled = causal_fill(observed, origin=5, fallback=np.array([0.0]))
    assert filled[:, 0].tolist() == [1.0, 2.0, 3.0, 3.0, 3.0]  # never reads the 100 at step 5
    empty = causal_fill(np.array([[np.nan], [np.nan], [7.0]]), 2, np.array([5.0]))
    assert empty[:, 0].tolist() == [5.0, 5.0]


def test_interpolation_like_labels_stay_literal_in_train_eval_and_predict(tmp_path):
    header = TS_HEADER.replace("@classLabel true a b", "@classLabel true ${seed} ${nokey}")
    rows = [f"{i % 3},{i % 5},{i % 2}:{'${seed}' if i % 2 else '${nokey}'}" for i in range(12)]
    (tmp_path / "train.ts").write_text(header + "\n".join(rows) + "\n")
    (tmp_path / "test.ts").write_text(header + "\n".join(rows[:4]) + "\n")
    cfg = compose_config(
        "train",
        [
            *FAST,
            "trainer.max_epochs=1",
            f"data.train_file={tmp_path / 'train.ts'}",
            f"data.test_file={tmp_path / 'test.ts'}",
            "data.val_fraction=0.34",
            "seed=3",
        ],
        tmp_path / "run",
    )
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["rnnlab_data_state"]["classes"] == ["${nokey}", "${seed}"]
    assert "${" not in json.dumps(checkpoint["rnnlab_config"])  # names never enter the config
    metrics = evaluate(compose_config("eval", [f"ckpt_path={ckpt}"], tmp_path / "eval"))
    assert 0.0 <= metrics["test/acc"] <= 1.0
    output = tmp_path / "preds.csv"
    predict(
        compose_config(
            "predict",
            [f"ckpt_path={ckpt}", f"input={tmp_path / 'test.ts'}", f"output={output}"],
            tmp_path / "predict",
        )
    )
    frame = pd.read_csv(output, keep_default_na=False)
    assert list(frame.columns) == ["sample", "predicted", "p_${nokey}", "p_${seed}", "label"]
    assert set(frame["predicted"]) <= {"${seed}", "${nokey}"}
    assert set(frame["label"]) == {"${seed}", "${nokey}"}

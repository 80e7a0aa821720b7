"""``rnnlab.predict`` for every task: a short real run, then predictions from the checkpoint
alone, in original units, matching what ``trainer.test`` saw on the same data."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.checkpoint import load_checkpoint
from rnnlab.data.export import export
from rnnlab.eval import evaluate, restore
from rnnlab.predict import predict
from rnnlab.train import train
from rnnlab.utils.errors import DataError
from tests.conftest import FAST, compose_config
from tests.test_cli import _run


def _train(tmp_path_factory, overrides: list[str]) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config("train", [*FAST, *overrides], out)
    return out / "checkpoints" / "best.ckpt", train(cfg)


def _predict(ckpt: Path, source: Path, output: Path) -> pd.DataFrame:
    overrides = [f"ckpt_path={ckpt}", f"input={source}", f"output={output}"]
    cfg = compose_config("predict", [*overrides, "trainer.accelerator=cpu"], output.parent)
    predict(cfg)
    return pd.read_csv(output)


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    return _train(tmp_path_factory, ["experiment=forecast", "trainer.max_epochs=2"])


def test_forecast_predictions_match_test_windows(forecast_run, tmp_path):
    ckpt, metrics = forecast_run
    _, datamodule, model = restore(load_checkpoint(ckpt))
    datamodule.setup("fit")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    outputs = trainer.predict(model, dataloaders=datamodule.test_dataloader())
    forecasts = torch.cat([o["prediction"] for o in outputs])
    actual = torch.stack([w["y"] for w in datamodule.dataset("test")])
    assert forecasts.shape == actual.shape == (318, 26, 1)
    assert (forecasts - actual).abs().mean().item() == pytest.approx(metrics["test/mae"], rel=1e-5)

    # The command on the history up to the last test window's origin forecasts that window.
    history = pd.read_csv(export("co2", tmp_path / "co2.csv"))
    _, origin = datamodule.windows["test"][-1]
    history.iloc[:origin].to_csv(tmp_path / "history.csv", index=False)
    table = _predict(ckpt, tmp_path / "history.csv", tmp_path / "out" / "forecast.csv")
    assert list(table.columns) == ["step", "date", "co2"]
    assert table["step"].tolist() == list(range(1, 27))
    assert table["date"].tolist() == history["date"].iloc[origin : origin + 26].tolist()
    np.testing.assert_allclose(table["co2"], forecasts[-1, :, 0].numpy(), rtol=1e-6)
    assert 350 < table["co2"].mean() < 390  # ppm, not normalised units


def test_forecast_eval_reproduces_test_metrics(forecast_run, tmp_path):
    ckpt, metrics = forecast_run
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "trainer.accelerator=cpu"], tmp_path)
    again = evaluate(cfg)
    for key in ("test/mae", "test/mase", "test/mae_seasonal_naive", "test/smape"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6), key


def test_eval_and_predict_say_what_they_wrote_and_where(forecast_run, tmp_path, caplog):
    ckpt, _ = forecast_run
    caplog.set_level(logging.INFO)
    out = tmp_path / "eval"
    overrides = [f"ckpt_path={ckpt}", "trainer.accelerator=cpu", "logger=none"]
    evaluate(compose_config("eval", overrides, out))
    table = _predict(ckpt, export("co2", tmp_path / "co2.csv"), tmp_path / "forecast.csv")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("rnnlab")]
    assert f"run directory: {out} (metrics.json)" in lines
    assert lines[-1] == f"wrote {len(table)} rows to {tmp_path / 'forecast.csv'}"


def test_forecasts_are_drawn_in_tensorboard(forecast_run):
    ckpt, _ = forecast_run
    events = EventAccumulator(str(ckpt.parents[1] / "tensorboard"))
    events.Reload()
    assert "test/forecasts" in events.Tags()["images"]
    assert "test/mae_seasonal_naive" in events.Tags()["scalars"]


def test_forecast_predict_input_with_other_columns_is_refused(forecast_run, tmp_path):
    ckpt, _ = forecast_run
    frame = pd.read_csv(export("co2", tmp_path / "co2.csv")).rename(columns={"co2": "CO2"})
    frame.to_csv(tmp_path / "renamed.csv", index=False)
    output = tmp_path / "out.csv"
    with pytest.raises(
        DataError, match=r"renamed\.csv has no column 'co2' \(columns: \['date', 'CO2'\]\)"
    ):
        _predict(ckpt, tmp_path / "renamed.csv", output)
    assert not output.exists()


def test_forecast_predict_needs_a_full_lookback(forecast_run, tmp_path):
    ckpt, _ = forecast_run
    frame = pd.read_csv(export("co2", tmp_path / "co2.csv")).iloc[-50:]
    frame.to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(
        DataError, match=r"short\.csv has 50 rows; the model reads the last lookback = 104"
    ):
        _predict(ckpt, tmp_path / "short.csv", tmp_path / "out.csv")


def test_predict_command_fails_in_one_line_without_output(forecast_run, tmp_path):
    ckpt, _ = forecast_run
    (tmp_path / "bad.csv").write_text("date,co2\n2001-01-06,370.1\n2001-01-06,370.4\n")
    result = _run(
        [
            "-m",
            "rnnlab.predict",
            f"ckpt_path={ckpt}",
            "input=bad.csv",
            "output=out.csv",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: bad.csv line 3: time 2001-01-06 00:00:00 repeats the time on line 2; "
        "times must be unique and sorted (per series)"
    )
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "run").exists()


def test_classification_predictions_reproduce_test_accuracy(tmp_path_factory, tmp_path):
    ckpt, metrics = _train(tmp_path_factory, [])
    table = _predict(ckpt, export("JapaneseVowels", tmp_path / "jv.ts"), tmp_path / "labels.csv")
    assert len(table) == 370
    probabilities = table[[f"p_{c}" for c in range(1, 10)]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = (table["predicted"] == table["label"]).mean()
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_regression_predictions_reproduce_test_rmse(tmp_path_factory, tmp_path):
    ckpt, metrics = _train(tmp_path_factory, ["experiment=covid3month"])
    assert metrics["test/rmse_train_mean"] == pytest.approx(0.0447, abs=2e-4)
    table = _predict(ckpt, export("Covid3Month", tmp_path / "c.ts"), tmp_path / "rates.csv")
    assert len(table) == 61
    rmse = np.sqrt(((table["prediction"] - table["target"]) ** 2).mean())
    assert rmse == pytest.approx(metrics["test/rmse"], rel=1e-5)
    assert 0.0 < table["prediction"].mean() < 0.2  # a death rate, in original units


def _shops(n: int = 60) -> pd.DataFrame:
    """Two shops' daily sales with a weekly cycle and a price covariate."""
    rng = np.random.default_rng(3)
    frames = []
    for shop, level in (("north", 50.0), ("south", 500.0)):
        day = np.arange(n)
        price = 10 + rng.normal(0, 1, n)
        sales = level * (1 + 0.3 * np.sin(2 * np.pi * day / 7)) - 2 * price
        frames.append(pd.DataFrame({"shop": shop, "day": day, "sales": sales, "price": price}))
    return pd.concat(frames, ignore_index=True)


def test_own_csv_with_series_and_covariates_trains_and_predicts(tmp_path_factory, tmp_path):
    data = tmp_path / "shops.csv"
    _shops().to_csv(data, index=False)
    ckpt, metrics = _train(
        tmp_path_factory,
        [
            "experiment=forecast_csv",
            f"data.file={data}",
            "data.time_column=day",
            "data.target_columns=[sales]",
            "data.covariate_columns=[price]",
            "data.series_column=shop",
            "data.per_series=true",
            "data.lookback=14",
            "data.horizon=3",
            "data.season_length=7",
        ],
    )
    assert metrics["test/mae_seasonal_naive"] > 0
    table = _predict(ckpt, data, tmp_path / "out.csv")
    assert list(table.columns) == ["shop", "step", "day", "sales"]
    assert table["shop"].tolist() == ["north"] * 3 + ["south"] * 3
    assert table["day"].tolist() == [60, 61, 62] * 2
    # per-series statistics map each shop back to its own level
    north, south = (table.loc[table.shop == s, "sales"].mean() for s in ("north", "south"))
    assert 0 < north < 150 < south

    stranger = _shops().assign(shop=lambda d: d.shop.replace("south", "east"))
    stranger.to_csv(tmp_path / "east.csv", index=False)
    with pytest.raises(DataError, match=r"east\.csv: series 'east' was not in the training data"):
        _predict(ckpt, tmp_path / "east.csv", tmp_path / "east_out.csv")

"""Probabilistic forecasting end to end: a short real run with a distribution or quantiles, its
interval metrics against a hand computation from the checkpoint, quantile columns in
``rnnlab.predict``'s table, shaded intervals in the figure, the seasonal-naive baseline's
empirical intervals, and the errors a user can make."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.batch import RESIDUAL_LEVELS
from rnnlab.callbacks.figures import ForecastFigure, forecast_figure
from rnnlab.checkpoint import load_checkpoint
from rnnlab.data.residual_quantiles import residual_quantiles
from rnnlab.data.windows import WindowSpec
from rnnlab.ensemble import load_member
from rnnlab.eval import restore
from rnnlab.models import intervals
from rnnlab.utils.errors import DataError
from tests.test_cli import _run
from tests.test_predict import _predict, _train


def _sales(n: int = 90, seed: int = 4) -> pd.DataFrame:
    """Two shops' daily counts: a weekly cycle around each shop's level, with Poisson noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for shop, level in (("north", 20.0), ("south", 80.0)):
        day = np.arange(n)
        rate = level * (1 + 0.3 * np.sin(2 * np.pi * day / 7))
        frames.append(pd.DataFrame({"shop": shop, "day": day, "sales": rng.poisson(rate)}))
    return pd.concat(frames, ignore_index=True)


def _overrides(data: Path, *more: str) -> list[str]:
    return [
        "experiment=forecast_csv",
        f"data.file={data}",
        "data.time_column=day",
        "data.target_columns=[sales]",
        "data.series_column=shop",
        "data.per_series=true",
        "data.lookback=14",
        "data.horizon=3",
        "data.season_length=7",
        *more,
    ]


@pytest.fixture(scope="module")
def sales_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    _sales().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module", params=["normal", "negative_binomial"])
def distribution_run(request, tmp_path_factory, sales_csv):
    ckpt, metrics = _train(
        tmp_path_factory, _overrides(sales_csv, f"model.distribution={request.param}")
    )
    return request.param, ckpt, metrics


def _test_outputs(ckpt: Path):
    _, datamodule, model = restore(load_checkpoint(ckpt))
    datamodule.setup("fit")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    outputs = trainer.predict(model, dataloaders=datamodule.test_dataloader())
    actual = torch.stack([w["y"] for w in datamodule.dataset("test")]).double()
    quantiles = torch.cat([o["quantiles"] for o in outputs]).double()
    levels = outputs[0]["levels"].tolist()
    return actual, quantiles, levels, torch.cat([o["prediction"] for o in outputs])


def test_interval_metrics_match_the_checkpoints_own_quantiles(distribution_run):
    name, ckpt, metrics = distribution_run
    for key in ("crps", "pinball", "coverage_80", "coverage_95", "interval_width_80"):
        assert np.isfinite(metrics[f"test/{key}"]), key
        assert np.isfinite(metrics[f"test/{key}_seasonal_naive"]), key
    actual, quantiles, levels, point = _test_outputs(ckpt)
    assert levels == [0.1, 0.5, 0.9]
    assert bool((quantiles.diff(dim=-1) >= 0).all())
    low, high = quantiles[..., 0], quantiles[..., 2]
    inside = ((low <= actual) & (actual <= high)).double().mean().item()
    assert metrics["test/coverage_80"] == pytest.approx(inside, abs=1e-6)
    assert metrics["test/interval_width_80"] == pytest.approx((high - low).mean().item(), rel=1e-5)
    pinball = torch.stack(
        [
            intervals.pinball(quantiles[..., i], actual, torch.tensor(q))
            for i, q in enumerate(levels)
        ]
    ).mean()
    assert metrics["test/pinball"] == pytest.approx(pinball.item(), rel=1e-5)
    # the point forecast is the median, and MAE is scored on it
    torch.testing.assert_close(point.double(), quantiles[..., 1], rtol=1e-5, atol=1e-4)
    assert metrics["test/mae"] == pytest.approx((point - actual).abs().mean().item(), rel=1e-5)
    if name == "negative_binomial":  # counts: every quantile is a whole number
        assert torch.equal(quantiles, quantiles.round())


def test_predict_writes_quantile_columns_beside_the_forecast(distribution_run, sales_csv, tmp_path):
    _, ckpt, _ = distribution_run
    table = _predict(ckpt, sales_csv, tmp_path / "out.csv")
    assert list(table.columns) == ["shop", "step", "day", "sales", "p10", "p50", "p90"]
    assert (table["p10"] <= table["p50"]).all() and (table["p50"] <= table["p90"]).all()
    np.testing.assert_allclose(table["sales"], table["p50"], rtol=1e-5)


def test_quantile_output_trains_and_scores_only_the_intervals_it_has(tmp_path_factory, sales_csv):
    _, metrics = _train(tmp_path_factory, _overrides(sales_csv, "model.quantiles=[0.1,0.5,0.9]"))
    assert np.isfinite(metrics["test/crps"]) and np.isfinite(metrics["test/coverage_80"])
    assert "test/coverage_95" not in metrics  # 0.025 and 0.975 are not among its quantiles
    assert np.isfinite(metrics["test/coverage_95_seasonal_naive"])


def test_a_point_forecaster_logs_no_interval_metrics(tmp_path_factory, sales_csv):
    _, metrics = _train(tmp_path_factory, _overrides(sales_csv))
    assert not [key for key in metrics if "crps" in key or "coverage" in key]


def test_an_ensemble_of_distributions_is_refused_in_one_line(distribution_run):
    _, ckpt, _ = distribution_run
    with pytest.raises(DataError, match="an ensemble averages direct point forecasts"):
        load_member(ckpt)


def test_negative_binomial_on_non_counts_is_refused_in_one_line(tmp_path_factory, tmp_path):
    data = tmp_path / "levels.csv"
    _sales().assign(sales=lambda d: d.sales + 0.5).to_csv(data, index=False)
    overrides = _overrides(data, "model.distribution=negative_binomial", "trainer.max_epochs=1")
    with pytest.raises(DataError, match=r"needs counts .* but a target is \d+\.5; use") as error:
        _train(tmp_path_factory, overrides)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_negative_binomial_on_non_counts_ends_the_command_in_one_line(tmp_path):
    data = tmp_path / "levels.csv"
    _sales().assign(sales=lambda d: d.sales + 0.5).to_csv(data, index=False)
    overrides = _overrides(data, "model.distribution=negative_binomial", "trainer.max_epochs=1")
    run_dir = tmp_path / "run"
    result = _run(["-m", "rnnlab.train", *overrides, f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs counts" in lines[0], result.stderr
    assert not (run_dir / "checkpoints").exists()


def test_seasonal_naive_residual_quantiles_follow_a_hand_computation():
    # a weekly cycle plus a trend of 0.5 a step: every seasonal-naive error is 7 * 0.5 = 3.5
    # (one week of trend), then divided by the series' scale
    t = torch.arange(60, dtype=torch.float32)
    values = (torch.sin(2 * torch.pi * t / 7) + 0.5 * t)[:, None]
    spec = WindowSpec(lookback=14, horizon=3, num_targets=1, season_length=7)
    table = residual_quantiles([values], [torch.tensor([2.0])], spec)
    assert table.shape == (3, 1, len(RESIDUAL_LEVELS))
    torch.testing.assert_close(table, torch.full_like(table, 3.5 / 2), rtol=1e-4, atol=1e-4)
    # errors of two series pool; a series with an undefined scale is left out
    noise = torch.randn(60, 1, generator=torch.Generator().manual_seed(0))
    spread = residual_quantiles(
        [values + noise, values], [torch.tensor([1.0]), torch.tensor([float("nan")])], spec
    )
    alone = residual_quantiles([values + noise], [torch.tensor([1.0])], spec)
    torch.testing.assert_close(spread, alone)
    errors = (values + noise)[14 + torch.arange(44)[:, None] + torch.arange(3)] - (values + noise)[
        torch.arange(44)[:, None] + 7 + torch.arange(3)
    ]
    expected = np.quantile(errors[..., 0].double().numpy(), 0.8995, axis=0)
    level = int(np.searchsorted(RESIDUAL_LEVELS.numpy(), 0.8995))
    np.testing.assert_allclose(alone[:, 0, level].numpy(), expected, rtol=1e-5)


def test_forecast_figure_shades_each_interval():
    horizon = torch.arange(3, dtype=torch.float32)
    window = {
        "history": torch.zeros(5),
        "actual": horizon,
        "forecast": horizon,
        "80% interval": torch.stack([horizon - 1, horizon + 1], dim=-1),
        "95% interval": torch.stack([horizon - 2, horizon + 2], dim=-1),
    }
    figure = forecast_figure([window], "sales")
    shaded = figure.axes[0].collections
    assert len(shaded) == 2
    labels = sorted(c.get_label() for c in shaded)
    assert labels == ["80% interval", "95% interval"]
    assert "forecast" in [line.get_label() for line in figure.axes[0].lines]


def test_autoregressive_decoder_trains_scores_and_predicts_its_draws(
    tmp_path_factory, sales_csv, tmp_path
):
    overrides = _overrides(
        sales_csv,
        "model.distribution=negative_binomial",
        "model.decoder=autoregressive",
        "model.encoder.bidirectional=false",
        "model.num_samples=40",
    )
    ckpt, metrics = _train(tmp_path_factory, overrides)
    for key in ("crps", "pinball", "coverage_80", "coverage_95", "interval_width_80", "mae"):
        assert np.isfinite(metrics[f"test/{key}"]), key
    table = _predict(ckpt, sales_csv, tmp_path / "out.csv")
    assert list(table.columns) == ["shop", "step", "day", "sales", "p10", "p50", "p90"]
    assert (table["p10"] <= table["p90"]).all()
    np.testing.assert_array_equal(
        table[["p10", "p50", "p90"]], table[["p10", "p50", "p90"]].round()
    )
    # the same seed draws the same forecasts
    again = _predict(ckpt, sales_csv, tmp_path / "again.csv")
    pd.testing.assert_frame_equal(table, again)


def test_the_figure_callback_keeps_a_probabilistic_test_steps_intervals(distribution_run):
    _, ckpt, _ = distribution_run
    _, datamodule, model = restore(load_checkpoint(ckpt))
    datamodule.setup("fit")
    batch = next(iter(datamodule.test_dataloader()))
    model.on_test_epoch_start()
    with torch.no_grad():
        outputs = model.test_step(batch, 0)
    assert set(outputs) == {"prediction", "80% interval", "95% interval"}
    low, high = outputs["80% interval"].unbind(-1)
    assert bool((low <= outputs["prediction"]).all() and (outputs["prediction"] <= high).all())
    callback = ForecastFigure(windows=2)
    callback.chosen = {int(batch.index[0])}
    callback.on_test_batch_end(None, model, outputs, batch, 0)  # type: ignore[arg-type]
    [window] = callback.drawn
    assert window["80% interval"].shape == (len(batch.y[0]), 2)
    torch.testing.assert_close(window["forecast"], outputs["prediction"][0, :, 0])

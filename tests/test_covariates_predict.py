"""Future-known covariates, static columns and calendar features end to end: a model trained
with a future covariate that sets the target beats the same run without it, ``rnnlab.predict``
reads the rows ahead and follows them, and checkpoints with and without the settings load."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.checkpoint.format import CONFIG_KEY, DATA_KEY
from rnnlab.eval import evaluate
from rnnlab.predict import predict
from rnnlab.train import train
from rnnlab.utils.errors import DataError
from tests.conftest import FAST, compose_config
from tests.test_covariates import _frame


def _promo_csv(path, n: int = 200, seed: int = 0) -> str:
    """A target that the promotion flag of the same day sets (10 or 15, small noise)."""
    frame = _frame(n, seed)[["date", "y", "promo"]]
    frame["y"] = 10 + 5 * frame["promo"] + np.random.default_rng(seed + 1).normal(size=n) * 0.2
    frame.to_csv(path, index=False)
    return str(path)


PROMO_RUN = [
    *FAST,
    "experiment=forecast_csv",
    "data.time_column=date",
    "data.target_columns=[y]",
    "data.lookback=7",
    "data.horizon=3",
    "data.season_length=7",
    "data.batch_size=16",
    "trainer.max_epochs=8",
    "model.optimizer.lr=0.02",
    "model.encoder.hidden_size=16",
    "logger=none",
    "seed=0",
]


@pytest.fixture(scope="module")
def promo_runs(tmp_path_factory):
    """The same run with the promotion as a future covariate and without it."""
    folder = tmp_path_factory.mktemp("promo")
    csv = _promo_csv(folder / "promo.csv")
    runs = {}
    for name, extra in (("with", ["data.future_covariate_columns=[promo]"]), ("without", [])):
        cfg = compose_config("train", [*PROMO_RUN, f"data.file={csv}", *extra], folder / name)
        runs[name] = (folder / name / "checkpoints" / "best.ckpt", train(cfg))
    return csv, runs


def test_a_future_covariate_that_sets_the_target_is_learnt(promo_runs):
    _, runs = promo_runs
    with_promo, without = runs["with"][1], runs["without"][1]
    # without it, the target is a coin flip between 10 and 15: MAE about 2.5
    assert without["test/mae"] > 2.0
    assert with_promo["test/mae"] < 0.5 * without["test/mae"]
    assert with_promo["test/mae"] < with_promo["test/mae_seasonal_naive"]


def _predict(ckpt, source, output) -> pd.DataFrame:
    overrides = [f"ckpt_path={ckpt}", f"input={source}", f"output={output}"]
    predict(compose_config("predict", [*overrides, "trainer.accelerator=cpu"], output.parent))
    return pd.read_csv(output)


def test_predict_reads_the_future_rows_and_follows_them(promo_runs, tmp_path):
    csv, runs = promo_runs
    history = pd.read_csv(csv).iloc[-20:]
    last = pd.Timestamp(history["date"].iloc[-1])
    forecasts = {}
    for plan in ([1.0, 0.0, 1.0], [0.0, 1.0, 0.0]):
        future = pd.DataFrame(
            {
                "date": [str((last + pd.Timedelta(days=k + 1)).date()) for k in range(3)],
                "y": np.nan,
                "promo": plan,
            }
        )
        path = tmp_path / f"input{plan[0]:.0f}.csv"
        pd.concat([history, future]).to_csv(path, index=False)
        table = _predict(runs["with"][0], path, tmp_path / f"out{plan[0]:.0f}.csv")
        assert table["date"].tolist() == future["date"].tolist()
        forecasts[plan[0]] = table["y"].to_numpy()
        promoted = table["y"][np.array(plan) == 1]
        assert promoted.min() > table["y"][np.array(plan) == 0].max() + 2.5
    assert np.all(np.abs(forecasts[1.0] - forecasts[0.0]) > 2.5)  # only the plan differs


def test_predict_without_the_future_rows_says_which_are_needed(promo_runs, tmp_path):
    csv, runs = promo_runs
    path = tmp_path / "history.csv"
    rows = pd.read_csv(csv).iloc[-20:]
    rows.iloc[:-1].assign(y=lambda f: f["y"].where(f.index < rows.index[-2])).to_csv(
        path, index=False
    )
    with pytest.raises(DataError) as refused:
        _predict(runs["with"][0], path, tmp_path / "out.csv")
    assert str(refused.value) == (
        f"{path}: the model reads future covariates ['promo'] over the 3 steps after the last "
        "target value (line 19), but 1 rows follow it; add the 3 rows to forecast, targets "
        "empty and ['promo'] filled"
    )
    assert not (tmp_path / "out.csv").exists()


NEW_SETTINGS = ("future_covariate_columns", "static_columns", "calendar")


def test_a_checkpoint_from_before_them_predicts_and_resumes(promo_runs, tmp_path, caplog):
    """A checkpoint whose stored data settings lack the three (written before they existed)
    predicts as the same run's checkpoint with them does, and a run resumes from it."""
    csv, runs = promo_runs
    ckpt = runs["without"][0]
    checkpoint = torch.load(ckpt, weights_only=True)
    assert [checkpoint[CONFIG_KEY]["data"].pop(k) for k in NEW_SETTINGS] == [[], [], []]
    old = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    old.parent.mkdir(parents=True)
    torch.save(checkpoint, old)
    history = tmp_path / "history.csv"
    pd.read_csv(csv).iloc[-20:].to_csv(history, index=False)
    now = _predict(ckpt, history, tmp_path / "now" / "out.csv")
    before = _predict(old, history, tmp_path / "before" / "out.csv")
    pd.testing.assert_frame_equal(before, now)
    # the run left in its folder resumes with today's settings at their defaults
    torch.save(checkpoint, old.parent / "best.ckpt")
    overrides = [*PROMO_RUN, f"data.file={csv}", "trainer.max_epochs=9"]
    with caplog.at_level(logging.WARNING, logger="rnnlab"):
        train(compose_config("train", overrides, tmp_path / "resumed"))
    assert f"resuming from {old}, left in this run directory" in caplog.text


def test_static_and_calendar_inputs_predict_from_the_history_alone(tmp_path):
    """Calendar features need no future rows (the next time stamps give them); a series whose
    static category the model never saw is refused in one line."""
    frame = _frame(80, series=2)[["date", "store", "y", "kind"]]
    frame.to_csv(tmp_path / "stores.csv", index=False)
    overrides = [
        *PROMO_RUN,
        f"data.file={tmp_path / 'stores.csv'}",
        "data.series_column=store",
        "data.static_columns=[kind]",
        "data.calendar=[weekday,month]",
        "trainer.max_epochs=1",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    # evaluated from the checkpoint alone: its categories, not refitted ones
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "trainer.accelerator=cpu"], tmp_path / "e")
    assert evaluate(cfg)["test/mae"] == pytest.approx(metrics["test/mae"], rel=1e-6)
    assert torch.load(ckpt, weights_only=True)[DATA_KEY]["static_categories"] == {
        "kind": ["big", "small"]
    }
    history = frame.groupby("store").tail(10)
    history.to_csv(tmp_path / "history.csv", index=False)
    table = _predict(ckpt, tmp_path / "history.csv", tmp_path / "out" / "forecast.csv")
    assert table["store"].tolist() == ["s0"] * 3 + ["s1"] * 3
    assert table["date"].tolist()[:3] == ["2021-03-22", "2021-03-23", "2021-03-24"]
    assert np.isfinite(table["y"]).all()
    history.assign(kind="medium").to_csv(tmp_path / "unseen.csv", index=False)
    with pytest.raises(DataError) as refused:
        _predict(ckpt, tmp_path / "unseen.csv", tmp_path / "out" / "unseen_forecast.csv")
    assert str(refused.value) == (
        f"{tmp_path / 'unseen.csv'} series 's0': static column 'kind' holds 'medium', a "
        "category the model never saw (it knows ['big', 'small']); forecast it with a model "
        "trained on it"
    )

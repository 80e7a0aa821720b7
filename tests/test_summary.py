"""``rnnlab.summary`` of sweeps over folds and seeds: one row per configuration, mean and sd of
the objective over its jobs. Multirun folders are written by hand, so no training runs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rnnlab.summary import configurations, main, summarise


def _job(root: Path, number: int, overrides: dict[str, object], metrics: dict | None) -> None:
    """A job folder as Hydra and ``rnnlab.train`` leave it (``metrics`` None: it failed)."""
    job = root / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()])
    )
    (job / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"monitor": "val/loss", "monitor_mode": "min"})
    )
    if metrics is None:
        status = {"status": "failed", "error": "boom"}
    else:
        status = {"status": "completed", "error": None}
        (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "status.json").write_text(json.dumps(status))


def _cv_sweep(root: Path) -> dict[str, list[float]]:
    """``-m data.folds=3 data.fold=0,1,2 model.encoder.hidden_size=32,64``, job 4 failed;
    returns each size's objectives."""
    objectives = {"32": [0.5, 0.7, 0.6], "64": [0.3, 0.4, math.nan]}
    number = 0
    for size in ("32", "64"):
        for fold in range(3):
            value = objectives[size][fold]
            metrics = None if math.isnan(value) else {"val/loss_best": value, "test/acc": 1 - value}
            overrides = {"data.folds": 3, "data.fold": fold, "model.encoder.hidden_size": size}
            _job(root, number, overrides, metrics)
            number += 1
    return {k: [v for v in values if not math.isnan(v)] for k, values in objectives.items()}


def test_folds_are_aggregated_per_configuration(tmp_path):
    objectives = _cv_sweep(tmp_path)
    configs = configurations(summarise(tmp_path))
    assert configs is not None
    assert list(configs.columns[:4]) == [
        "model.encoder.hidden_size",
        "best",
        "jobs",
        "not_completed",
    ]
    assert configs["model.encoder.hidden_size"].tolist() == ["32", "64"]
    assert configs["jobs"].tolist() == [3, 2] and configs["not_completed"].tolist() == [0, 1]
    for row, size in zip(configs.itertuples(index=False), ("32", "64"), strict=True):
        values = objectives[size]
        assert row[configs.columns.get_loc("val/loss_best_mean")] == pytest.approx(
            statistics.mean(values)
        )
        assert row[configs.columns.get_loc("val/loss_best_sd")] == pytest.approx(
            statistics.stdev(values)
        )
        mean_acc = statistics.mean(1 - v for v in values)
        assert row[configs.columns.get_loc("test/acc_mean")] == pytest.approx(mean_acc)
    assert configs["best"].tolist() == ["", "*"]  # lower mean val/loss


def test_seeds_alone_make_one_configuration_and_one_job_has_no_sd(tmp_path):
    for number, seed in enumerate((1, 2)):
        _job(tmp_path, number, {"seed": seed}, {"val/loss_best": 0.2 * (seed + 1)})
    configs = configurations(summarise(tmp_path))
    assert configs is not None and len(configs) == 1
    assert configs["jobs"][0] == 2
    assert configs["val/loss_best_mean"][0] == pytest.approx(0.5)
    assert configs["val/loss_best_sd"][0] == pytest.approx(statistics.stdev([0.4, 0.6]))

    single = tmp_path / "single"
    _job(single, 0, {"seed": 1, "data.fold": 0}, {"val/loss_best": 0.4})
    _job(single, 1, {"seed": 1, "data.fold": 1}, None)
    one = configurations(summarise(single))
    assert one is not None and one["jobs"][0] == 1 and math.isnan(one["val/loss_best_sd"][0])


def test_command_adds_the_configuration_table_only_for_folds_or_seeds(tmp_path, capsys):
    _cv_sweep(tmp_path / "cv")
    main([str(tmp_path / "cv")])
    printed = capsys.readouterr().out
    assert "Per configuration, mean and sd over data.fold:" in printed
    written = pd.read_csv(tmp_path / "cv" / "summary_configs.csv")
    assert written["jobs"].tolist() == [3, 2]
    assert (tmp_path / "cv" / "summary_configs.md").read_text().strip() in printed
    assert (tmp_path / "cv" / "summary.csv").is_file()  # the per-job table as before

    plain = tmp_path / "plain"
    for number, size in enumerate((16, 32)):
        _job(plain, number, {"model.encoder.hidden_size": size}, {"val/loss_best": 0.1 * number})
    main([str(plain)])
    printed = capsys.readouterr().out
    assert "Per configuration" not in printed
    assert configurations(summarise(plain)) is None
    assert not (plain / "summary_configs.csv").exists()


def test_configurations_are_compared_with_the_first_fold_by_fold(tmp_path):
    # folds differ much more than the two settings do: the change lowers every fold's loss by
    # 0.01 or 0.02, far less than the spread between folds; a failed job drops only its pair
    base = {(0, 1): 0.10, (1, 1): 0.50, (2, 1): 0.90, (0, 2): 0.20, (1, 2): 0.60, (2, 2): 0.80}
    change = {(0, 1): 0.09, (1, 1): 0.48, (2, 1): math.nan, (0, 2): 0.19, (1, 2): 0.58}
    change[(2, 2)] = 0.79
    number = 0
    for dropout, values in (("0.2", base), ("0.5", change)):
        for (fold, seed), value in values.items():
            metrics = None if math.isnan(value) else {"val/loss_best": value}
            overrides = {"data.folds": 3, "data.fold": fold, "seed": seed, "model.dropout": dropout}
            _job(tmp_path, number, overrides, metrics)
            number += 1
    configs = configurations(summarise(tmp_path))
    assert configs is not None and configs["model.dropout"].tolist() == ["0.2", "0.5"]
    assert configs["val/loss_best_vs_first"][0] == pytest.approx(0.0)
    assert configs["val/loss_best_vs_first_se"][0] == pytest.approx(0.0)
    differences = [-0.01, -0.02, -0.01, -0.02, -0.01]  # fold 2 of seed 1 failed: not paired
    assert configs["val/loss_best_vs_first"][1] == pytest.approx(statistics.mean(differences))
    assert configs["val/loss_best_vs_first_se"][1] == pytest.approx(
        statistics.stdev(differences) / math.sqrt(len(differences))
    )
    # the unpaired means differ by the failed fold as much as by the setting
    assert configs["val/loss_best_sd"][1] > 0.2


def test_repeated_fold_and_seed_pairs_give_no_paired_difference(tmp_path):
    # size 16 ran seed 1 twice (e.g. two sweeps merged): which run pairs with size 32's is unknown
    for number, (size, seed) in enumerate(((16, 1), (16, 1), (32, 1), (32, 2))):
        _job(tmp_path, number, {"seed": seed, "model.size": size}, {"val/loss_best": 0.1 * number})
    configs = configurations(summarise(tmp_path))
    assert configs is not None and configs["jobs"].tolist() == [2, 2]
    assert configs["val/loss_best_vs_first"].isna().all()

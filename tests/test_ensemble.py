"""``rnnlab.ensemble``: members' best checkpoints averaged on the test split, scored by the
models' own metrics; members that do not share data are refused before anything is written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.checkpoint import CONFIG_KEY, DATA_KEY, load_checkpoint
from rnnlab.data.export import export
from rnnlab.ensemble import ensemble, member_checkpoints
from rnnlab.predict import predict
from rnnlab.run.command import check
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import FAST, compose_config
from tests.test_cli import _run

TINY = [
    *FAST,
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=1",
    "model.encoder.hidden_size=8",
    "logger=none",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny classifiers of other seeds and sizes, and a tiny sequence regressor."""
    root = tmp_path_factory.mktemp("runs")
    settings = {
        "a": ["seed=1"],
        "b": ["seed=2", "model.encoder.hidden_size=12", "data.folds=3", "data.fold=1"],
        "regression": ["experiment=covid3month", "seed=1"],
    }
    for name, overrides in settings.items():
        train(compose_config("train", [*TINY, *overrides], root / name))
    return {name: root / name for name in settings}


def _ensemble(out: Path, runs: list[Path], *extra: str) -> dict:
    overrides = [f"runs=[{','.join(map(str, runs))}]", "trainer.accelerator=cpu", *extra]
    return ensemble(compose_config("ensemble", overrides, out))


@pytest.mark.parametrize("name", ["a", "regression"])
def test_an_ensemble_of_one_scores_as_its_member(runs, tmp_path, name):
    metrics = _ensemble(tmp_path, [runs[name]])
    tests = [k for k in metrics if k.startswith("test/")]
    expected = {"test/acc", "test/f1", "test/loss"} if name == "a" else {"test/rmse", "test/mae"}
    assert expected <= set(tests)
    for key in tests:
        assert metrics[key] == pytest.approx(metrics[f"member0/{key}"], rel=1e-5, abs=1e-7), key
    assert metrics["members"] == 1
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)
    assert json.loads((tmp_path / "members.json").read_text()) == [
        str(runs[name] / "checkpoints" / "best.ckpt")
    ]


def test_an_ensemble_of_two_averages_the_members_predictions(runs, tmp_path, caplog):
    source = export("JapaneseVowels", tmp_path / "test.ts", split="test")
    members = [runs["a"], runs["b"]]
    caplog.set_level(logging.INFO, logger="rnnlab.ensemble")
    metrics = _ensemble(
        tmp_path / "ens", members, f"input={source}", f"predictions={tmp_path / 'ens.csv'}"
    )
    table = pd.read_csv(tmp_path / "ens.csv")
    # it says what it wrote and where
    assert caplog.messages[-2:] == [
        f"wrote {len(table)} rows to {tmp_path / 'ens.csv'}",
        f"run directory: {tmp_path / 'ens'} (members.json, metrics.json)",
    ]
    singles = []
    for i, run in enumerate(members):
        output = tmp_path / f"member{i}.csv"
        overrides = [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"input={source}"]
        cfg = compose_config(
            "predict", [*overrides, f"output={output}", "trainer.accelerator=cpu"], tmp_path
        )
        predict(cfg)
        singles.append(pd.read_csv(output))
    columns = [f"p_{c}" for c in range(1, 10)]
    assert list(table.columns) == list(singles[0].columns)  # rnnlab.predict's format
    mean = (singles[0][columns].to_numpy() + singles[1][columns].to_numpy()) / 2
    np.testing.assert_allclose(table[columns].to_numpy(), mean, rtol=1e-6, atol=1e-7)
    # the file is the test split, so the ensemble's accuracy on it is its test/acc
    assert (table["predicted"] == table["label"]).mean() == pytest.approx(metrics["test/acc"])
    assert {"member0/test/acc", "member1/test/acc"} <= set(metrics)
    assert metrics["member0/test/acc"] != metrics["member1/test/acc"]


def _edited_copy(run: Path, out: Path, edit) -> Path:
    """A copy of ``run``'s best checkpoint with ``edit`` applied to it, as another run."""
    checkpoint = load_checkpoint(run / "checkpoints" / "best.ckpt")
    edit(checkpoint)
    (out / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, out / "checkpoints" / "best.ckpt")
    return out


def _rename_set(checkpoint: dict) -> None:
    checkpoint[CONFIG_KEY]["data"]["name"] = "BasicMotions"


def _rename_class(checkpoint: dict) -> None:
    checkpoint[DATA_KEY]["classes"][0] = "one"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_rename_set, r"data\.name is 'BasicMotions' there but 'JapaneseVowels' in member 0"),
        (_rename_class, r"data state\.classes\[0\] is 'one' there but '1' in member 0"),
    ],
)
def test_members_of_other_data_are_refused_naming_the_key(runs, tmp_path, edit, message):
    other = _edited_copy(runs["a"], tmp_path / "other", edit)
    with pytest.raises(DataError, match=rf"member 1 \(.*other.*\) does not share .*{message}"):
        _ensemble(tmp_path / "out", [runs["a"], other])
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_members_of_other_tasks_are_refused(runs, tmp_path):
    with pytest.raises(DataError, match=r"member 1 .* is a SequenceRegressor, member 0 .* a Seq"):
        _ensemble(tmp_path, [runs["a"], runs["regression"]])


def test_runs_are_run_dirs_or_multirun_dirs_with_a_best_checkpoint_each(runs, tmp_path):
    sweep = tmp_path / "sweep"
    for job in ("0", "1", "10"):
        (sweep / job / "checkpoints").mkdir(parents=True)
        (sweep / job / "checkpoints" / "best.ckpt").touch()
    (sweep / ".submitit").mkdir()
    found = member_checkpoints(str(sweep))
    assert [p.parents[1].name for p in found] == ["0", "1", "10"]
    assert member_checkpoints([str(runs["a"])]) == [runs["a"] / "checkpoints" / "best.ckpt"]

    (sweep / "1" / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(DataError, match=r"sweep/1 has no checkpoints/best\.ckpt"):
        member_checkpoints(str(sweep))
    with pytest.raises(DataError, match=r"is neither a run directory .* nor a multirun"):
        member_checkpoints(str(tmp_path / "sweep" / "0" / "checkpoints"))
    with pytest.raises(ConfigError, match=r"runs= names no runs"):
        member_checkpoints([])


def test_command_refuses_bad_runs_in_one_line_and_writes_nothing(runs, tmp_path):
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    result = _run(
        ["-m", "rnnlab.ensemble", f"runs=[{runs['a']},{empty}]", "hydra.run.dir=out"], tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: runs: {empty} has no checkpoints/best.ckpt (a failed or unfinished run?); "
        "list the runs to ensemble as runs=[...]"
    )
    assert not (tmp_path / "out").exists()


def test_command_line_without_runs_is_refused_before_hydra_starts():
    with pytest.raises(ConfigError, match=r"^missing required value: runs=\.\.\.$"):
        check("ensemble", [])
    with pytest.raises(ConfigError, match=r"did you mean"):
        check("ensemble", ["runs=x", "trainer.max_epoch=1"])

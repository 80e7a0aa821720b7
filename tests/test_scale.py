"""Sweeps, the sweep summary, DDP on CPU processes (single run and multirun), cluster launchers
and the checks that refuse a bad sweep before any job starts. The commands run as subprocesses,
as a user runs them, because Hydra's launchers and DDP workers are what is tested."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from rnnlab.run.command import check
from rnnlab.summary import main as summary_main
from rnnlab.summary import summarise
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError
from tests.test_cli import _run

QUICK = ["debug=limit", "trainer.enable_progress_bar=false", "model.encoder.hidden_size=16"]


def _train(args: list[str], cwd: Path, timeout: int = 300):
    result = _run(
        ["-m", "rnnlab.train", *args],
        cwd,
        env={"RNNLAB_LOG_DIR": str(cwd / "logs")},
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _status(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


# --- sweeps and their summary ----------------------------------------------------------------
def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _train(
        ["-m", "model.encoder.cell=gru,transformer,lstm", *QUICK, f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    assert _status(sweep / "0")["status"] == "completed"
    failed = _status(sweep / "1")
    assert failed == {
        "status": "failed",
        "error": "unknown cell 'transformer'; set model.encoder.cell to one of rnn, lstm, gru",
    }
    assert _status(sweep / "2")["status"] == "completed"  # the job after the failure ran

    table = summarise(sweep)
    assert list(table["model.encoder.cell"]) == ["gru", "transformer", "lstm"]
    assert table["status"][1].startswith("failed: unknown cell 'transformer'")
    completed = table[table.status == "completed"]
    best = completed["val/loss_best"].idxmin()
    assert list(table["best"]) == ["*" if i == best else "" for i in range(3)]
    assert {"test/acc", "test/f1", "val/loss_best"} <= set(table.columns)

    summary_main([str(sweep)])
    printed = capsys.readouterr().out
    assert printed.startswith("|   job | best ") and "transformer" in printed
    assert (sweep / "summary.md").read_text().strip() == printed.strip()
    assert (sweep / "summary.csv").read_text().startswith("job,best,model.encoder.cell,status,")


@pytest.mark.slow
def test_optuna_search_records_failed_trials_and_keeps_going(tmp_path):
    sweep = tmp_path / "optuna"
    # Dropout between stacked layers above 1 is invalid, so exactly the trials that draw
    # num_layers=2 fail; the seeded sampler's first three draws are 1, 2, 1 layers.
    _train(
        [
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=3",
            "model.encoder.dropout=1.5",
            "debug=limit",
            "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    statuses = [_status(sweep / str(i)) for i in range(3)]
    assert [s["status"] for s in statuses] == ["completed", "failed", "completed"]
    assert statuses[1]["error"].startswith(
        "model.encoder cannot be built (dropout should be a number in range"
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = min(
        json.loads((sweep / str(i) / "metrics.json").read_text())["val/loss_best"] for i in (0, 2)
    )
    assert result["best_value"] == pytest.approx(best)  # the objective: best val/loss


# --- DDP on CPU processes --------------------------------------------------------------------
FULL_BATCH = [
    # One full batch per step: 1 process x 216 sequences and 2 processes x 108 compute the same
    # mean gradient, so both runs must end with the same weights and metrics.
    "debug=limit",
    "trainer.limit_train_batches=1.0",
    "trainer.limit_val_batches=1.0",
    "trainer.limit_test_batches=1.0",
    "trainer.max_epochs=4",
    "model.head_dropout=0",
    "model.encoder.hidden_size=16",
    "trainer.enable_progress_bar=false",
]


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    _train([*FULL_BATCH, "data.batch_size=216", "hydra.run.dir=one"], tmp_path)
    _train([*FULL_BATCH, "trainer=ddp_cpu", "data.batch_size=108", "hydra.run.dir=two"], tmp_path)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in ("test/acc", "test/f1", "test/loss", "val/loss_best", "val/acc"):
        assert two[key] == pytest.approx(one[key], abs=1e-5), key
    # one run directory, written once: no worker re-ran Hydra into a directory or log of its own
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        ".hydra",
        ".rnnlab-run",
        "checkpoints",
        "metrics.json",
        "tensorboard",
        "train.log",
    ]
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_ddp_inside_a_multirun(tmp_path):
    _train(["-m", "seed=1,2", "trainer=ddp_cpu", *QUICK], tmp_path)
    runs = list((tmp_path / "logs").glob("*/multiruns/*"))
    assert len(runs) == 1, runs  # no worker started a sweep of its own
    jobs = sorted(p.name for p in runs[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        assert _status(runs[0] / job)["status"] == "completed"
        assert (runs[0] / job / "metrics.json").is_file()
        assert not list((runs[0] / job).glob("*rank*"))


# --- cluster launchers -----------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_through_submitit_local_executor(tmp_path):
    sweep = tmp_path / "local"
    _train(["-m", "hydra/launcher=local", "seed=1,2", *QUICK, f"hydra.sweep.dir={sweep}"], tmp_path)
    for job in ("0", "1"):
        assert _status(sweep / job)["status"] == "completed"
    assert list((sweep / ".submitit").iterdir())  # submitit's own job records


def test_slurm_launcher_takes_nodes_and_gpus_from_the_trainer(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
    assert OmegaConf.select(cfg, "trainer.strategy._target_") == "rnnlab.utils.ddp.HydraDDPStrategy"


# --- refused before any job starts -----------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.encoder.hiden_size=32,64"], "Could not override 'model.encoder.hiden_size'"),
        (["hydra/launcher=slurmm"], "Could not find 'hydra/launcher/slurmm'; Available options"),
        (["trainer=ddp", "trainer.devices=64"], "trainer.devices=64 asks for 64 GPUs"),
        (["experiment=forcast"], "unknown experiment 'forcast' (did you mean forecast?); choose"),
        (["seed=1,2", "debug=nope"], "unknown debug 'nope'"),
    ],
)
def test_bad_sweep_is_refused_in_one_line(args, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check("train", ["-m", *args])


def test_bad_sweep_command_starts_no_job(tmp_path):
    result = _run(
        ["-m", "rnnlab.train", "-m", "model.encoder.hiden_size=32,64", "seed=1,2"],
        tmp_path,
        env={"RNNLAB_LOG_DIR": str(tmp_path / "logs")},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Could not override 'model.encoder.hiden_size'; To append to your config use "
        "+model.encoder.hiden_size=32; Key 'hiden_size' is not in struct "
        "(did you mean model.encoder.hidden_size?)"
    ]
    assert not (tmp_path / "logs").exists()
    assert "LOCAL_RANK" not in os.environ

"""One run lifecycle (``rnnlab.run``): a command composes its config once, checks that config and
runs its job(s) on it; what a check refuses never reaches a job."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rnnlab.run.command import check
from rnnlab.utils.errors import ConfigError
from tests.processes import python_process

# Counts Hydra's compositions in a real command process; the job records the config it was
# given instead of training, so the run takes seconds.
COUNTING_COMMAND = """
import json, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from rnnlab.run.command import command

compositions = []
compose = ConfigLoaderImpl.load_configuration

def counted(self, *args, **kwargs):
    compositions.append(kwargs.get("run_mode", args[2] if len(args) > 2 else None).name)
    return compose(self, *args, **kwargs)

ConfigLoaderImpl.load_configuration = counted
jobs = []

def job(cfg):
    jobs.append({"seed": cfg.seed, "hidden": cfg.model.encoder.hidden_size})

try:
    command("train", job)
finally:
    print(json.dumps({"compositions": compositions, "jobs": jobs}))
"""


def run_counted(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = python_process(["-c", COUNTING_COMMAND, *args], cwd)
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def test_a_run_composes_its_config_once(tmp_path):
    result, seen = run_counted(
        ["seed=7", "model.encoder.hidden_size=12", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert seen["compositions"] == ["MULTIRUN"]  # one composition, which the job ran on
    assert seen["jobs"] == [{"seed": 7, "hidden": 12}]
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()  # Hydra's run, as before


def test_a_sweep_composes_once_then_once_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    result, seen = run_counted(
        ["-m", "seed=1,2", "model.encoder.hidden_size=12", f"hydra.sweep.dir={sweep}"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    # the sweep's own config and its first point, checked before any job starts; then the
    # sweeper's compositions of each job's own config (Hydra's basic sweeper composes each
    # twice: once to check the whole batch, once in the launcher)
    ours, sweepers = seen["compositions"][:2], seen["compositions"][2:]
    assert ours == ["MULTIRUN", "RUN"]
    assert set(sweepers) == {"RUN"} and len(sweepers) >= 2
    assert seen["jobs"] == [{"seed": 1, "hidden": 12}, {"seed": 2, "hidden": 12}]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


def test_a_refused_command_runs_no_job_and_writes_nothing(tmp_path):
    result, seen = run_counted(["model.encoder.hiden_size=12", "hydra.run.dir=run"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Could not override 'model.encoder.hiden_size'; To append to your config use "
        "+model.encoder.hiden_size=12; Key 'hiden_size' is not in struct "
        "(did you mean model.encoder.hidden_size?)"
    ]
    assert seen["jobs"] == []
    assert not (tmp_path / "run").exists()


def test_a_swept_typo_is_refused_before_any_job(tmp_path):
    result, seen = run_counted(["-m", "model.encoder.hiden_size=8,12"], tmp_path)
    assert result.returncode == 2
    assert "did you mean model.encoder.hidden_size?" in result.stderr
    assert seen["jobs"] == []


def test_hydra_flags_are_left_to_hydra(tmp_path):
    result, seen = run_counted(["--cfg", "job", "seed=5"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "seed: 5" in result.stdout
    assert seen["jobs"] == []


def test_a_sweep_value_without_multirun_is_refused():
    with pytest.raises(ConfigError, match=r"Ambiguous value for argument 'seed=1,2'"):
        check("train", ["seed=1,2"])


def test_the_mode_a_config_sets_is_read_from_the_one_composition():
    cfg = check("train", ["hparams_search=optuna", "hydra.sweep.dir=/tmp/never-created"])
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert check("train", []).hydra.mode.name == "RUN"


def test_a_group_left_unchosen_is_refused_for_a_run_but_left_to_a_sweeper(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "choose.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model/scheduler: ???\n"
    )
    search = f"hydra.searchpath=[file://{tmp_path}]"
    with pytest.raises(ConfigError, match=r"^missing required option: model/scheduler=\.\.\.$"):
        check("train", [search, "experiment=choose"])
    assert check("train", [search, "experiment=choose", "model/scheduler=cosine"]).model.scheduler
    assert check("train", ["-m", search, "experiment=choose"]).hydra.mode.name == "MULTIRUN"


def test_a_later_sweep_point_that_does_not_compose_ends_in_one_line(tmp_path):
    result, seen = run_counted(
        ["-m", "model/scheduler=cosine,cosin", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith("(did you mean cosine?)"), line
    assert seen["jobs"] == []
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_sweep_is_continued_in_place_with_resume_auto(tmp_path):
    sweep = tmp_path / "sweep"
    common = [
        "-m",
        "rnnlab.train",
        "-m",
        "seed=1,2",
        "model.encoder.hidden_size=8",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]
    first = python_process([*common, "trainer.max_epochs=1"], tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    refused = python_process([*common, "trainer.max_epochs=2"], tmp_path)
    assert refused.returncode == 2 and "already holds files" in refused.stderr

    again = python_process([*common, "trainer.max_epochs=2", "resume=auto"], tmp_path, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    for job in ("0", "1"):  # each job continued its own run, not the newest run anywhere
        log = (sweep / job / "train.log").read_text()
        assert f"resuming from {sweep / job / 'checkpoints' / 'last.ckpt'}" in log
        assert json.loads((sweep / job / "metrics.json").read_text())["epochs"] == 2

"""The task contract, proved from outside ``src/``: the first-bit task of ``tests/first_bit_task``
(its DataModule, LightningModule and YAML files on an extra Hydra search path) trains, checkpoints,
evaluates from the checkpoint alone, predicts, resumes after a kill at an exact step and
ensembles, through the real commands, with no file of rnnlab knowing it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import rnnlab
from rnnlab.capabilities import Averageable
from rnnlab.checkpoint import CONFIG_KEY, load_checkpoint, restore
from rnnlab.run.command import check
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError, DataError
from tests.first_bit_task import CONF, DATA, MODEL

REPO = Path(__file__).resolve().parents[1]
SEARCH_PATH = f"hydra.searchpath=[file://{CONF}]"
LISTED = f"user_classes=[{DATA},{MODEL}]"
# TASK with BY_ACCURACY is what experiment=first_bit selects, spelled out: the groups each file
# of the task adds are used on their own (test_an_experiment_..._passes_preflight checks both)
TASK = [SEARCH_PATH, "data=first_bit", "model=first_bit", LISTED]
BY_ACCURACY = ["monitor=val/acc", "monitor_mode=max"]
QUIET = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "logger=none"]
EPOCHS = 5
STEPS_PER_EPOCH = 16  # 500 training sequences in batches of 32
TIMELESS = ("time/",)


def command(
    module: str, args: list[str], cwd: Path, timeout: int = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` as a user runs it, with this repository importable (where
    the task's package lives) and one thread (the suite shares the machine's cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def train_command(run_dir: Path, *overrides: str) -> list[str]:
    return [*TASK, *QUIET, f"trainer.max_epochs={EPOCHS}", f"hydra.run.dir={run_dir}", *overrides]


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def timeless(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMELESS)}


def scored(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("test/")}


def train_run(run_dir: Path, *overrides: str) -> dict[str, float]:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    done = command("rnnlab.train", train_command(run_dir, *overrides), run_dir.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return metrics_of(run_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    run_dir = tmp_path_factory.mktemp("first_bit") / "seed1"
    return run_dir, train_run(run_dir, "seed=1", *BY_ACCURACY)


@pytest.mark.slow
def test_the_task_trains_and_learns(trained):
    run_dir, metrics = trained
    assert metrics["test/acc"] >= 0.9  # chance is 0.5: the encoder carried the first bit
    assert metrics["epochs"] == EPOCHS
    stored = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")[CONFIG_KEY]
    assert stored["data"]["_target_"] == DATA and stored["model"]["_target_"] == MODEL
    assert stored["model"]["encoder"]["_target_"] == "rnnlab.models.encoder.RNNEncoder"
    assert stored["model"]["encoder"]["input_size"] == 1  # from the data's model_settings()


@pytest.mark.slow
def test_eval_from_the_checkpoint_alone_repeats_the_runs_test_metrics(trained, tmp_path):
    """No search path, no data or model overrides: the checkpoint and the allow-list of this
    command are all eval has."""
    run_dir, metrics = trained
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    done = command(
        "rnnlab.eval", [f"ckpt_path={ckpt}", LISTED, *QUIET, "hydra.run.dir=eval"], tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = metrics_of(tmp_path / "eval")
    assert set(evaluated) == set(scored(metrics))
    assert evaluated == scored(metrics)  # the same weights on the same test split


@pytest.mark.slow
def test_without_the_listing_the_checkpoint_is_refused(trained):
    """The allow-list is the loading command's: the checkpoint's own ``user_classes`` (stored
    with its config) are never read."""
    run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint[CONFIG_KEY]["user_classes"] == [DATA, MODEL]
    with pytest.raises(DataError, match=rf"^checkpoint .*: data\._target_ is '{DATA}', not one"):
        restore(checkpoint, ckpt)
    with pytest.raises(DataError, match=rf"^checkpoint .*: model\._target_ is '{MODEL}', not one"):
        restore(checkpoint, ckpt, [DATA])
    model = restore(checkpoint, ckpt, [DATA, MODEL]).model
    assert type(model).__name__ == "FirstBitClassifier" and isinstance(model, Averageable)


def predict_bits(run_dir: Path, where: Path) -> subprocess.CompletedProcess[str]:
    """``rnnlab.predict`` of ``where/bits.txt`` into ``where/predicted.csv`` with the run's best
    checkpoint and the task's classes listed."""
    arguments = [
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        LISTED,
        "input=bits.txt",
        "output=predicted.csv",
        "trainer.accelerator=cpu",
        "hydra.run.dir=predict",
    ]
    return command("rnnlab.predict", arguments, where)


@pytest.mark.slow
def test_predict_writes_the_tasks_own_table(trained, tmp_path):
    run_dir, metrics = trained
    lines = ["1000", "0111", "# a comment line", "", "10110011100011110000", "0100101"]
    lines += [f"{first}{'01' * n}" for first in "01" for n in range(2, 9)]
    (tmp_path / "bits.txt").write_text("\n".join(lines) + "\n")
    done = predict_bits(run_dir, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "predicted.csv", dtype={"bits": str})
    sequences = [line for line in lines if line and not line.startswith("#")]
    assert list(table.columns) == ["bits", "first_bit", "p_one"]
    assert table["bits"].tolist() == sequences
    assert ((table["p_one"] > 0.5).astype(int) == table["first_bit"]).all()
    correct = (table["first_bit"] == table["bits"].str[0].astype(int)).mean()
    assert correct >= metrics["test/acc"] - 0.1


def test_no_file_of_rnnlab_knows_the_task():
    """Neither the package nor its configs (whose _target_s make rnnlab's allow-list) name the
    task's module, classes or config files."""
    names = ("first_bit", "FirstBit", "first bit")
    roots = [Path(rnnlab.__file__).parent, Path(config_dir())]
    files = [p for root in roots for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    assert len(files) > 50
    knowing = {
        str(p): name
        for p in files
        for name in names
        if name in p.read_text(encoding="utf-8", errors="replace")
    }
    assert knowing == {}


def compose_train(overrides: list[str]) -> dict[str, Any]:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def test_the_experiment_composes_from_the_extra_search_path():
    """Hydra finds experiment=first_bit on the extra search path, and it selects what the
    commands above spell out."""
    chosen = compose_train([SEARCH_PATH, "experiment=first_bit"])
    spelled = compose_train([*TASK, *BY_ACCURACY])
    assert chosen["user_classes"] == [DATA, MODEL]
    assert (chosen["monitor"], chosen["monitor_mode"]) == ("val/acc", "max")
    assert chosen["data"] == spelled["data"] and chosen["model"] == spelled["model"]


def test_an_experiment_on_the_extra_search_path_passes_preflight(tmp_path):
    try:
        check("train", [SEARCH_PATH, "experiment=first_bit", f"hydra.run.dir={tmp_path / 'r'}"])
    except ConfigError as exc:
        pytest.fail(str(exc))


@pytest.mark.slow
def test_last_ckpt_holds_the_last_finished_epoch(trained):
    run_dir, _ = trained
    best = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    if best["epoch"] == EPOCHS - 1:
        pytest.skip("val/acc improved in the last epoch: both checkpoints are of it anyway")
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == EPOCHS - 1


# --- slow: a command each, or several trainings ---------------------------------------------
@pytest.mark.slow
def test_eval_without_the_listing_is_refused_in_one_line(trained, tmp_path):
    run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    done = command("rnnlab.eval", [f"ckpt_path={ckpt}", *QUIET, "hydra.run.dir=out"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: checkpoint {ckpt}: data._target_ is '{DATA}', not one")
    assert done.stderr.rstrip().endswith("listed in user_classes); refusing to load it")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_predict_refuses_a_bad_line_in_one_line(trained, tmp_path):
    run_dir, _ = trained
    (tmp_path / "bits.txt").write_text("0101\n\n01x1\n")
    done = predict_bits(run_dir, tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: bits.txt line 3: '01x1' is not a sequence of 0s and 1s\n"
    assert not (tmp_path / "predicted.csv").exists()


@pytest.mark.slow
def test_killed_at_an_exact_step_then_resumed_ends_as_an_uninterrupted_run(tmp_path):
    """The process kills itself before step 2 * 16 + 5 (mid third epoch); ``resume=auto``
    continues from the second epoch's last.ckpt and ends bit for bit where a straight run
    ends: metrics and final weights. Monitored by val/loss, which improves every epoch here, so
    that last.ckpt holds each run's final weights (see
    test_last_ckpt_holds_the_last_finished_epoch)."""
    logs = tmp_path / "logs"
    runs = logs / "first_bit" / "runs"
    common = ["task_name=first_bit", f"paths.log_dir={logs}", "seed=3"]
    straight = train_run(runs / "straight", *common)
    assert load_checkpoint(runs / "straight" / "checkpoints" / "last.ckpt")["epoch"] == EPOCHS - 1

    killed = runs / "killed"
    fault = [
        "+callbacks.fault._target_=rnnlab.callbacks.faults.SignalAtStep",
        f"+callbacks.fault.step={2 * STEPS_PER_EPOCH + 5}",
        "+callbacks.fault.signal=SIGKILL",
    ]
    crash = command("rnnlab.train", train_command(killed, *common, *fault), tmp_path)
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-3000:]
    assert not (killed / "metrics.json").exists()
    assert load_checkpoint(killed / "checkpoints" / "last.ckpt")["epoch"] == 1

    resumed = train_run(runs / "resumed", *common, "resume=auto")
    assert timeless(resumed) == timeless(straight)  # bit for bit, not approximately
    weights = [
        load_checkpoint(runs / name / "checkpoints" / "last.ckpt")["state_dict"]
        for name in ("straight", "resumed")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


@pytest.mark.slow
def test_two_seeds_ensemble_through_the_capability(trained, tmp_path):
    first, first_metrics = trained
    second = tmp_path / "seed2"
    second_metrics = train_run(second, "seed=2", *BY_ACCURACY)
    (tmp_path / "bits.txt").write_text("1000\n0111\n")
    done = command(
        "rnnlab.ensemble",
        [
            f"runs=[{first},{second}]",
            LISTED,
            "input=bits.txt",
            "predictions=ensemble.csv",
            "trainer.accelerator=cpu",
            "hydra.run.dir=ensemble",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = metrics_of(tmp_path / "ensemble")
    assert metrics["members"] == 2
    assert metrics["test/acc"] >= 0.9
    for i, member in enumerate((first_metrics, second_metrics)):  # as each run tested itself
        assert {k: metrics[f"member{i}/{k}"] for k in scored(member)} == scored(member)
    table = pd.read_csv(tmp_path / "ensemble.csv", dtype={"bits": str})
    assert table["bits"].tolist() == ["1000", "0111"]
    assert list(table.columns) == ["bits", "first_bit", "p_one"]

"""Crash and resume: a run killed at an exact step and resumed with ``resume=auto`` ends exactly
where an uninterrupted run with the same seed ends; resuming a finished run, resuming twice and
resuming with another ``trainer.max_epochs`` each do what they say; identical seeds give
identical runs."""

from __future__ import annotations

import json
import logging
import random
import shlex
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from rnnlab.callbacks.faults import SignalAtStep
from rnnlab.callbacks.run_state import StepSeed
from rnnlab.checkpoint import ResumePoint, adopt, load_checkpoint
from rnnlab.run.job import run_sweep_job, run_task
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, DataError, RunInterrupted
from tests.conftest import FAST, compose_config

RUN = [
    "task_name=resume",
    "trainer.max_epochs=5",
    "model.encoder.hidden_size=16",
    "model.head_dropout=0.3",  # randomness inside epochs, which resuming must reproduce
    "model.input_noise=0.1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]
COMPARED = ("test/acc", "test/f1", "test/loss", "val/loss_best", "epochs", "train/loss_epoch")
STEPS_PER_EPOCH = 14  # JapaneseVowels: 216 training sequences in batches of 16


def _metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def _timeless(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def _run(logs: Path, name: str, overrides: list[str]) -> dict[str, float]:
    """``train(cfg)`` with its run directory at ``logs/<task>/runs/<name>``, where
    ``resume=auto`` looks for earlier runs."""
    base = [*RUN, f"paths.log_dir={logs}"]
    cfg = compose_config("train", [*base, *overrides], logs / "resume" / "runs" / name)
    return train(cfg)


def _faulty_run(logs: Path, run_dir: Path, signal_name: str) -> list[str]:
    """The command of a run that sends itself ``signal_name`` before step 2 * 14 + 5."""
    return [
        sys.executable,
        "-m",
        "rnnlab.train",
        *RUN,
        f"paths.log_dir={logs}",
        f"hydra.run.dir={run_dir}",
        "+callbacks.fault._target_=rnnlab.callbacks.faults.SignalAtStep",
        f"+callbacks.fault.step={2 * STEPS_PER_EPOCH + 5}",
        f"+callbacks.fault.signal={signal_name}",
    ]


@pytest.mark.slow
def test_sigkill_at_an_exact_step_then_resume_equals_uninterrupted_run(tmp_path):
    """The process kills itself before step 2 * 14 + 5 (mid third epoch): no timer decides
    where the crash lands, so the test cannot race the training it interrupts."""
    logs = tmp_path / "logs"
    straight = _run(logs, "straight", [])

    killed = logs / "resume" / "runs" / "killed"
    crash = subprocess.run(
        _faulty_run(logs, killed, "SIGKILL"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-2000:]
    assert not (killed / "metrics.json").exists()
    assert not list(killed.glob("checkpoints/.*tmp"))
    last = load_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1  # the second epoch's checkpoint; the third never finished

    resumed = _run(logs, "resumed", ["resume=auto"])
    for key in COMPARED:
        assert resumed[key] == straight[key], key  # bit for bit, not approximately
    assert _timeless(resumed) == _timeless(straight)
    assert set(_metrics(logs / "resume" / "runs" / "resumed")) == set(straight)

    # a cluster job requeued after preemption runs again in its own directory: it continues
    # from the last.ckpt it finds there
    requeued = _run(logs, "killed", [])
    assert _timeless(requeued) == _timeless(straight)


@pytest.mark.slow
def test_sigterm_mid_training_stops_promptly_with_a_resumable_checkpoint(tmp_path):
    logs = tmp_path / "logs"
    straight = _run(logs, "straight", [])
    stopped = logs / "resume" / "runs" / "stopped"
    proc = subprocess.Popen(
        _faulty_run(logs, stopped, "SIGTERM"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # blocks until the process says it has signalled itself
        if line.startswith("fault: sending SIGTERM"):
            break
    sent = time.monotonic()
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + signal.SIGTERM, rest[-2000:]
    last_line = rest.strip().splitlines()[-1]
    hint = (
        "interrupted: SIGTERM at epoch 2, step 34; continue it from the last finished epoch with: "
    )
    assert last_line.startswith(hint)
    assert "Traceback" not in rest
    status = json.loads((stopped / "status.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == last_line[13:]
    assert not (stopped / "metrics.json").exists()
    assert load_checkpoint(stopped / "checkpoints" / "last.ckpt")["epoch"] == 1

    # the printed command works as printed (the stopped run's directory holds files, so it
    # writes to another): it ends exactly where the uninterrupted run ended
    command = shlex.split(last_line.removeprefix(hint))
    assert command[:3] == ["python", "-m", "rnnlab.train"]
    assert command[-2:] == [
        f"ckpt_path={stopped / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={stopped}-resumed",
    ]
    # without the test's own fault injection, which a user's command would not hold
    command = [arg for arg in command if not arg.startswith("+callbacks.fault.")]
    again = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads(Path(f"{stopped}-resumed", "metrics.json").read_text())
    assert _timeless(resumed) == _timeless(straight)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A finished 3-epoch run under ``logs/resume/runs/first``."""
    logs = tmp_path_factory.mktemp("finished") / "logs"
    return logs, _run(logs, "first", [*FAST])


def test_resuming_a_finished_run_retests_it_and_reports_the_same_metrics(
    finished, tmp_path, caplog
):
    logs, first = finished
    logs = _copy_logs(logs, tmp_path)
    with caplog.at_level(logging.WARNING):
        again = _run(logs, "again", [*FAST, "resume=auto"])
    said = [r.getMessage() for r in caplog.records if "nothing to train" in r.getMessage()]
    assert len(said) == 1 and "already trained 3 epochs" in said[0]
    assert _timeless(again) == _timeless(first)  # val/loss_best, train/*, val/*, test/*
    written = _metrics(logs / "resume" / "runs" / "again")
    assert set(written) == set(_metrics(logs / "resume" / "runs" / "first"))
    assert written["time/startup_to_first_step_s"] is None  # no step ran
    # the new run directory holds the run's checkpoints, not only a pointer to the old ones
    new_checkpoints = logs / "resume" / "runs" / "again" / "checkpoints"
    assert {p.name for p in new_checkpoints.iterdir()} == {"best.ckpt", "last.ckpt"}

    # and once more, from the re-test's own copy (the newest last.ckpt now)
    with caplog.at_level(logging.INFO):
        twice = _run(logs, "twice", [*FAST, "resume=auto"])
    assert any(str(new_checkpoints / "last.ckpt") in r.getMessage() for r in caplog.records)
    assert _timeless(twice) == _timeless(first)


def test_resuming_with_more_epochs_continues_to_the_same_end_as_a_straight_run(finished, tmp_path):
    logs, _ = finished
    logs = _copy_logs(logs, tmp_path)
    longer = [*FAST, "trainer.max_epochs=5"]
    continued = _run(logs, "continued", [*longer, "resume=auto"])
    straight = _run(tmp_path / "other", "straight", longer)
    assert continued["epochs"] == 5
    assert _timeless(continued) == _timeless(straight)


@pytest.mark.slow
def test_a_run_with_variational_dropout_and_weight_drop_resumes_bit_for_bit(tmp_path):
    """Their masks come from each step's seed, so a run stopped after 2 epochs and resumed to 4
    ends exactly where a straight 4-epoch run ends (both paths of the encoder train with them)."""
    regularised = [
        *FAST,
        "model.encoder.num_layers=2",
        "model.encoder.locked_input_dropout=0.2",
        "model.encoder.locked_layer_dropout=0.3",
        "model.encoder.locked_output_dropout=0.2",
        "model.encoder.weight_drop=0.4",
    ]
    logs = tmp_path / "logs"
    _run(logs, "first", [*regularised, "trainer.max_epochs=2"])
    continued = _run(logs, "continued", [*regularised, "trainer.max_epochs=4", "resume=auto"])
    straight = _run(tmp_path / "other", "straight", [*regularised, "trainer.max_epochs=4"])
    assert continued["epochs"] == 4
    assert _timeless(continued) == _timeless(straight)
    plain = _run(
        tmp_path / "plain", "plain", [*FAST, "model.encoder.num_layers=2", "trainer.max_epochs=4"]
    )
    assert plain["train/loss_epoch"] != straight["train/loss_epoch"]  # the masks acted


def test_resuming_with_fewer_epochs_than_done_is_refused_in_one_line(finished, tmp_path):
    logs, _ = finished
    with pytest.raises(ConfigError, match=r"trained 3 epochs, more than trainer.max_epochs=2; set"):
        _run(logs, "shorter", [*FAST, "trainer.max_epochs=2", "resume=auto"])
    assert not (logs / "resume" / "runs" / "shorter" / "checkpoints").exists()


def test_resuming_with_other_model_settings_is_refused_naming_the_key(finished):
    logs, _ = finished
    message = (
        r"model.encoder.hidden_size is 16 in the checkpoint but 8 now; "
        r"give the interrupted run's overrides"
    )
    with pytest.raises(ConfigError, match=message):
        _run(logs, "other", [*FAST, "model.encoder.hidden_size=8", "resume=auto"])


def _copy_logs(logs: Path, tmp_path: Path) -> Path:
    """A private copy of the shared finished run, so tests resuming it don't see each other."""
    import shutil

    copy = tmp_path / "logs"
    shutil.copytree(logs, copy)
    return copy


def _checkpoint_with_best(directory: Path) -> Path:
    """A last.ckpt whose checkpoint callback recorded best.ckpt (score 0.25) in ``directory``."""
    directory.mkdir(parents=True)
    callback = ModelCheckpoint(dirpath=str(directory), monitor="val/loss")
    callback.best_model_score = torch.tensor(0.25)
    callback.best_model_path = str(directory / "best.ckpt")
    callback.best_k_models = {callback.best_model_path: torch.tensor(0.25)}
    callback.last_model_path = str(directory / "last.ckpt")
    callbacks = {callback.state_key: callback.state_dict()}
    best = {"weights": torch.ones(2), "callbacks": callbacks, "rnnlab_config": {}}
    torch.save(best, directory / "best.ckpt")
    last = {"epoch": 4, "callbacks": callbacks, "rnnlab_config": {}}
    torch.save(last, directory / "last.ckpt")
    return directory / "last.ckpt"


def test_adopting_a_checkpoint_carries_the_best_score_and_file_into_the_new_run(tmp_path):
    # Lightning keeps only best_model_path when the checkpoint folder changes: a resumed run
    # that never improved would report and test a worse checkpoint as its best
    source = _checkpoint_with_best(tmp_path / "moved" / "checkpoints")
    point = ResumePoint(source, torch.load(source, weights_only=True), 5, False)
    new_dir = tmp_path / "new" / "checkpoints"
    adopted = adopt(point, new_dir)

    assert adopted == new_dir / "last.ckpt"
    best = torch.load(new_dir / "best.ckpt", weights_only=True)
    assert best["weights"].tolist() == [1.0, 1.0]
    for copy in (adopted, new_dir / "best.ckpt"):  # both point at the new folder only
        fresh = ModelCheckpoint(dirpath=str(new_dir), monitor="val/loss")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Lightning warns when it drops the best score
            fresh.load_state_dict(torch.load(copy, weights_only=True)["callbacks"][fresh.state_key])
        assert float(fresh.best_model_score) == 0.25
        assert fresh.best_model_path == str(new_dir / "best.ckpt")
        assert list(fresh.best_k_models) == [str(new_dir / "best.ckpt")]
        assert fresh.last_model_path == str(new_dir / "last.ckpt")
    assert point.best_score == 0.25 and point.best_path == str(new_dir / "best.ckpt")


def test_adopting_a_checkpoint_without_its_best_file_is_refused(tmp_path):
    source = _checkpoint_with_best(tmp_path / "run" / "checkpoints")
    (source.parent / "best.ckpt").unlink()
    point = ResumePoint(source, torch.load(source, weights_only=True), 5, False)
    with pytest.raises(DataError, match=r"best checkpoint best\.ckpt is not beside it; copy"):
        adopt(point, tmp_path / "new" / "checkpoints")


def test_signal_at_step_signals_once_exactly_at_its_step(monkeypatch):
    sent = []
    monkeypatch.setattr("os.kill", lambda pid, sig: sent.append(sig))
    fault = SignalAtStep(7, "SIGTERM")
    for step in (5, 6, 7, 7, 8):
        fault.on_train_batch_start(SimpleNamespace(global_step=step, is_global_zero=True))
    assert sent == [signal.SIGTERM]
    with pytest.raises(ConfigError, match="unknown signal 'SIGNOPE'"):
        SignalAtStep(1, "SIGNOPE")


def test_same_seed_gives_bit_identical_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = compose_config(
            "train", [*FAST, "model.head_dropout=0.3", "logger=none"], tmp_path / name
        )
        runs.append(train(cfg))
    assert _timeless(runs[0]) == _timeless(runs[1])


def test_step_seed_fixes_each_steps_numbers_without_deferring_device_calls(monkeypatch):
    seeder = StepSeed(3)
    module = SimpleNamespace(device=torch.device("cpu"))
    # a deferred seeding call for an idle device backend records a formatted stack trace
    stacks = []
    monkeypatch.setattr(traceback, "format_stack", lambda *a: stacks.append(a) or [])

    def draws(step: int) -> tuple[float, float, list[float]]:
        seeder.on_train_batch_start(SimpleNamespace(global_step=step), module)
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    first = draws(4)
    torch.rand(10)  # whatever happened in between
    assert draws(4) == first
    assert draws(5) != first
    assert stacks == []  # torch.manual_seed: three per step on a machine without a GPU


def _stopped_task(cfg: object) -> dict[str, float]:
    raise RunInterrupted("SIGTERM at epoch 1, step 3; resume with ...", signal.SIGTERM)


def test_interrupted_run_records_its_status_and_exits_with_the_signal(tmp_path, capsys):
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    with pytest.raises(SystemExit) as exited:
        run_task(_stopped_task, cfg)
    said = "SIGTERM at epoch 1, step 3; resume with ..."
    assert exited.value.code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == f"interrupted: {said}\n"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status == {"status": "interrupted", "error": said}


def test_interrupted_sweep_job_is_recorded_and_stops_the_sweep(tmp_path):
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "monitor": "val/loss"})
    with pytest.raises(RunInterrupted):  # not swallowed as a failed job: the sweep stops
        run_sweep_job(_stopped_task, cfg, lambda cfg, metrics: 0.0)
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "interrupted"


def test_resuming_with_the_other_encoder_path_continues_the_same_run(finished, tmp_path):
    """impl=packed and impl=padded compute the same: a run may resume on the other path."""
    logs, _ = finished
    logs = _copy_logs(logs, tmp_path)
    continued = _run(
        logs,
        "other_path",
        [*FAST, "trainer.max_epochs=4", "model.encoder.impl=packed", "resume=auto"],
    )
    assert continued["epochs"] == 4

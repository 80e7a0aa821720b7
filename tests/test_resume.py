"""Crash and resume: a run killed with SIGKILL mid-epoch and resumed with ``resume=auto`` ends
exactly where an uninterrupted run with the same seed ends; identical seeds give identical runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rnnlab.callbacks.run_state import StepSeed
from rnnlab.train import train
from tests.conftest import FAST, compose_config
from tests.test_scale import _train

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


def _metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def _wait_for_epoch(runs: Path, epoch: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Block until some run under ``runs`` has a last.ckpt of at least ``epoch``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        for last in runs.glob("*/checkpoints/last.ckpt"):
            # written atomically, so whatever exists is whole
            if torch.load(last, weights_only=True)["epoch"] >= epoch:
                return
        time.sleep(0.05)
    raise TimeoutError(f"no last.ckpt of epoch {epoch} under {runs}")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    straight.mkdir()
    _train([*RUN, "hydra.run.dir=run"], straight)

    crashed = tmp_path / "crashed"
    runs = crashed / "logs" / "resume" / "runs"
    env = {**os.environ, "RNNLAB_LOG_DIR": str(crashed / "logs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnlab.train", *RUN],
        cwd=crashed.mkdir() or crashed,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_epoch(runs, 1, proc)
        time.sleep(0.3)  # into the next epoch
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (killed,) = list(runs.iterdir())
    assert not (killed / "metrics.json").exists()
    assert not list(killed.glob("checkpoints/*.tmp"))

    time.sleep(1.1)  # run directories are named by the second
    _train([*RUN, "resume=auto"], crashed)
    resumed = next(p for p in runs.iterdir() if p != killed)
    expected, got = _metrics(straight / "run"), _metrics(resumed)
    for key in COMPARED:
        assert got[key] == expected[key], key  # bit for bit, not approximately


def test_same_seed_gives_bit_identical_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = compose_config(
            "train", [*FAST, "model.head_dropout=0.3", "logger=none"], tmp_path / name
        )
        runs.append(train(cfg))
    a, b = ({k: v for k, v in r.items() if not k.startswith("time/")} for r in runs)
    assert a == b


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

"""Callbacks that every run gets: per-step seeds and start-up timing."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux /proc); None where that is not available."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after the command name
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class StartupTimer(L.Callback):
    """Records the time from process start to the end of the first optimiser step."""

    def __init__(self) -> None:
        self.first_step_s: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.first_step_s is None:
            self.first_step_s = seconds_since_process_start()


class StepSeed(L.Callback):
    """Reseeds the random generators before every training step from ``seed`` and the step.

    Lightning's checkpoints do not hold generator states, and how many numbers the loop itself
    draws before the first step differs between a fresh start and a resume. Seeding each step
    makes dropout and input noise of step k the same whether the run went straight through or
    resumed from a checkpoint.

    Only the generators the run draws from are seeded: ``torch.manual_seed`` also defers a
    seeding call, recording a formatted stack trace, for every device backend that is not
    initialised (CUDA, XPU, MTIA); on a CPU run that cost about 0.1 ms a step, 1 % of a small
    model's step (scripts/bench_loop.py)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step_seed = (self.seed * 1_000_003 + trainer.global_step) % 2**32
        random.seed(step_seed)
        np.random.seed(step_seed)
        torch.default_generator.manual_seed(step_seed)
        if pl_module.device.type == "cuda":
            torch.cuda.manual_seed_all(step_seed)  # initialised by now, so seeded at once
        elif pl_module.device.type != "cpu":
            torch.manual_seed(step_seed)  # other accelerators: every backend, as before

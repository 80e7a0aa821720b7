"""What the gradient-flow diagnostics (``callbacks=diagnostics``) cost: the same training with
and without them, side by side in one process.

    .venv/bin/python scripts/bench/diagnostics.py [--small] [--every 50] [--epochs 3]
        [--repetitions 3] [--threads 1] [Hydra overrides, e.g. data.length=400]

Both variants compose ``experiment=adding`` (LSTM, 64 units, T = 200 by default) and train with
the Lightning Trainer minus progress bar and checkpoints, each with a TensorBoard logger, so the
diagnostics write everything they write in a real run (scalars every N steps; histograms and the
figure every 500 steps, which the timed epochs of 200 steps include). Measured: the wall time of
each epoch's training batches (validation excluded), median over all epochs and repetitions
after one untimed warm-up epoch per variant; the ratio of the medians is the cost. The CPU time
this process spent in the same epochs is measured too: on a machine shared with other jobs wall
times vary by tens of percent between epochs, and the CPU time of a single-threaded run is less
sensitive to them (both spreads are reported). Variants alternate order between repetitions.
The losses of the two variants must be equal: the diagnostics do not change training.

``--write-docs`` writes the table into docs/rnn-dynamics.md between the markers named
``bench:diagnostics`` followed by the Hydra overrides as typed, each after a ``:``
(``bench:diagnostics:data.length=400``).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    alternate,
    bench_parser,
    command_line,
    markdown_table,
    median,
    parse,
    run_script,
    spread,
)
from lightning_harness import EpochTimer, build, lean_trainer, machine

from rnnlab.callbacks.diagnostics import GradientFlowDiagnostics
from rnnlab.callbacks.run_state import StepSeed

VARIANTS = ("without diagnostics", "with diagnostics")


class CpuEpochTimer(L.Callback):
    """CPU seconds this process spent on each training epoch's batches (all its threads)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.process_time()
        self.seconds.append(math.nan)

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds[-1] = time.process_time() - self._start


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser(
        __doc__.splitlines()[0],
        "T=20, 1 timed epoch, 1 repetition",
        3,
        epochs=3,
        epochs_help="timed epochs per repetition",
        overrides="Hydra overrides of the run",
    )
    parser.add_argument("--every", type=int, default=50, help="diagnostics every N steps")
    # the adding experiment's own size: 200 steps an epoch, so the timed epochs hold the
    # figure and histograms at their cadence (every 500 steps) as well as the every-N passes
    parser.add_argument("--train-size", type=int, default=10000)
    small = {"epochs": 1, "repetitions": 1, "train_size": 100, "every": 2}
    args = parse(parser, argv, small)
    if args.small:
        args.overrides = ["data.length=20", *args.overrides]
    return args


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the Hydra overrides."""
    return args.overrides


def run(
    args: argparse.Namespace, variant: str, seed: int, folder: Path
) -> tuple[list[float], list[float], float]:
    """Train one variant; the timed epochs' wall and CPU seconds and the last training loss."""
    overrides = ["experiment=adding", f"data.train_size={args.train_size}", *args.overrides]
    cfg, datamodule, model = build(overrides, seed, folder)
    timer, cpu = EpochTimer(), CpuEpochTimer()
    callbacks = [timer, cpu, StepSeed(seed)]
    if variant == "with diagnostics":
        callbacks.append(GradientFlowDiagnostics(every_n_steps=args.every))
    logger = TensorBoardLogger(str(folder), name=variant.replace(" ", "_"), version=str(seed))
    trainer = lean_trainer(
        cfg, callbacks, max_epochs=args.epochs + 1, logger=logger, limit_val_batches=0
    )
    trainer.fit(model, datamodule=datamodule)
    loss = float(trainer.callback_metrics["train/loss_epoch"])
    return timer.seconds[1:], cpu.seconds[1:], loss


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the report."""
    return run_script("diagnostics", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Train both variants in turn; the report and its table."""
    with tempfile.TemporaryDirectory(prefix="bench-diagnostics-") as tmp:
        runs, load = alternate(
            VARIANTS,
            args.repetitions,
            lambda rep, name: run(
                args, name, args.seed + rep, Path(tmp) / f"{rep}-{VARIANTS.index(name)}"
            ),
        )
    seconds = {name: [s for times, _, _ in rs for s in times] for name, rs in runs.items()}
    cpu_seconds = {name: [s for _, cpu, _ in rs for s in cpu] for name, rs in runs.items()}
    losses = {name: [loss for _, _, loss in rs] for name, rs in runs.items()}
    base, cpu_base = median(seconds[VARIANTS[0]]), median(cpu_seconds[VARIANTS[0]])
    rows = [
        [
            name,
            median(seconds[name]),
            spread(seconds[name]),
            median(seconds[name]) / base,
            median(cpu_seconds[name]),
            spread(cpu_seconds[name]),
            median(cpu_seconds[name]) / cpu_base,
            losses[name][-1],
        ]
        for name in VARIANTS
    ]
    headers = ["variant", "epoch s (median)", "spread", "time ratio"]
    headers += ["epoch CPU s", "CPU spread", "CPU ratio", "final train loss"]
    table = markdown_table(headers, rows)
    same = losses[VARIANTS[0]] == losses[VARIANTS[1]]
    text = "\n\n".join(
        [
            f"`{command_line('diagnostics.py', argv)}`",
            f"{machine()}; {load.describe()}; diagnostics every {args.every} steps, "
            f"{args.epochs} timed epochs x {args.repetitions} repetitions",
            table,
            f"training losses equal with and without diagnostics: {same}",
        ]
    )
    return text, table


if __name__ == "__main__":
    main()

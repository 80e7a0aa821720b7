"""Training and inference throughput (sequences/s) of the default model, fp32 against bf16-mixed
precision, in one process.

    .venv/bin/python scripts/bench/throughput.py [--small] [--accelerator cpu|gpu] [--threads 1]
        [Hydra overrides of the run, e.g. model.encoder.hidden_size=256]

The default config is composed (bidirectional LSTM on JapaneseVowels, batch 16) and trained with
the Lightning Trainer at ``trainer.precision`` 32-true or bf16-mixed, minus progress bar, logger
and checkpoints, so the numbers are the model's and the loop's, not the extras'. Training
throughput is sequences per second of each epoch's training batches (validation excluded),
median over the epochs of all repetitions, after an untimed warm-up epoch per variant. Inference
throughput runs the trained model in eval mode under ``torch.inference_mode`` (and bf16 autocast
for bf16-mixed) over the test split, at the loader's batch size and at batch 256, median of the
repetitions. Variants alternate order between repetitions and share the initial weights. With
``--padded`` the ``padded`` rows run the encoder's padded path (``model.encoder.impl=padded``,
same outputs and gradients as packed). On a GPU the device name is printed.

``--write-docs`` writes the table into docs/benchmarks.md between the markers named
``bench:throughput:<accelerator>`` followed by the Hydra overrides as typed, each after a ``:``
(``bench:throughput:cpu``, ``bench:throughput:gpu:model.encoder.hidden_size=256``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    alternate,
    bench_parser,
    markdown_table,
    median,
    parse,
    report,
    run_script,
    spread,
    sync,
)
from lightning_harness import add_padded_arg, build, fit_timed, machine, seed_all

# name -> (trainer precision, encoder path: model.encoder.impl)
VARIANTS = {
    "fp32 (32-true), packed": ("32-true", "packed"),
    "bf16-mixed, packed": ("bf16-mixed", "packed"),
    "fp32, padded": ("32-true", "padded"),
    "bf16-mixed, padded": ("bf16-mixed", "padded"),
}
BASE = "fp32 (32-true), packed"


@dataclass
class Run:
    """One variant's training run: sequences/s of each epoch, of inference with each loader, the
    last training loss, sequences per epoch, and the trained model."""

    train: list[float]
    inference: dict[str, float]
    loss: float
    sequences: int
    model: L.LightningModule


def infer(model: L.LightningModule, loader: DataLoader, precision: str) -> float:
    """Sequences per second of one pass over ``loader`` in eval mode, without gradients."""
    device = model.device
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in precision)
    count = 0
    with torch.inference_mode(), autocast:
        sync(device)
        start = time.perf_counter()
        for batch in loader:
            # lengths stay on the CPU, as the DataModule keeps them
            model(batch.x.to(device), batch.lengths)
            count += len(batch)
        sync(device)
    return count / (time.perf_counter() - start)


def autocast_dtype(model: L.LightningModule, loader: DataLoader) -> torch.dtype:
    """The dtype the LSTM's output has under bf16 autocast: does the recurrence run in bf16?"""
    x = next(iter(loader)).x
    with torch.inference_mode(), torch.autocast(model.device.type, dtype=torch.bfloat16):
        out, _ = model.encoder.rnn(x.to(model.device))
    return out.dtype


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(
        __doc__.splitlines()[0],
        "2 epochs, 1 repetition",
        3,
        epochs=6,
        overrides="Hydra overrides, e.g. model.encoder.hidden_size=256",
    )
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    add_padded_arg(parser)
    return parse(parser, argv, small={"epochs": 2, "repetitions": 1})


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the accelerator, then the overrides."""
    return [args.accelerator, *args.overrides]


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown table."""
    return run_script("throughput", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Time every variant; the report and its table."""
    overrides = [f"trainer.accelerator={args.accelerator}", *args.overrides]
    cfg, datamodule, model0 = build(overrides, args.seed)
    loaders = {
        "loader": datamodule.test_dataloader(),
        "256": DataLoader(
            datamodule.dataset("test"), batch_size=256, collate_fn=datamodule.collate
        ),
    }
    names = [n for n, (_, impl) in VARIANTS.items() if args.padded or impl == "packed"]

    def run(name: str, epochs: int) -> Run:
        """Train a copy of the initial model, then time its inference over each loader."""
        precision, impl = VARIANTS[name]
        model = copy.deepcopy(model0)
        model.encoder.impl = impl
        seed_all(args.seed)
        timer, trainer = fit_timed(cfg, model, datamodule, precision=precision, max_epochs=epochs)
        train = [n / s for n, s in zip(timer.sequences, timer.seconds, strict=True)]
        inference = {key: infer(model, loader, precision) for key, loader in loaders.items()}
        loss = float(trainer.callback_metrics["train/loss_epoch"])
        sequences = sum(timer.sequences) // len(timer.sequences)
        return Run(train, inference, loss, sequences, model)

    # each variant's warm-up: an untimed epoch, training and inference
    runs, load = alternate(
        names, args.repetitions, lambda _, name: run(name, args.epochs), lambda n: run(n, 1)
    )
    last = runs[names[0]][-1]  # any run: they train on the same data and model
    dtype = autocast_dtype(last.model, loaders["loader"])

    def train(name: str) -> list[float]:
        return [rate for r in runs[name] for rate in r.train]

    def rate(name: str, key: str | None = None) -> float:
        return median(train(name) if key is None else [r.inference[key] for r in runs[name]])

    rows: list[list[Any]] = [
        [
            name,
            rate(name),
            rate(name) / rate(BASE),
            spread(train(name)),
            rate(name, "loader"),
            rate(name, "256"),
            rate(name, "256") / rate(BASE, "256"),
            f"{runs[name][-1].loss:.5f}",  # bf16 moves it only in the 4th digit
        ]
        for name in names
    ]
    table = markdown_table(
        [
            "precision, encoder",
            "train seq/s (median)",
            "train vs fp32",
            "train spread (max-min)/median",
            f"inference seq/s, batch {cfg.data.batch_size}",
            "inference seq/s, batch 256",
            "inference vs fp32 (batch 256)",
            "final train loss",
        ],
        rows,
    )
    text = report(
        "throughput.py",
        argv,
        f"{machine()}; accelerator {args.accelerator}; {cfg.data.name}: "
        f"{last.sequences} training sequences per epoch, "
        f"{len(datamodule.dataset('test'))} test sequences; {args.epochs} epochs x "
        f"{args.repetitions} repetitions; LSTM output dtype under bf16 autocast: {dtype}; "
        f"{load.describe()}",
        table,
    )
    return text, table


if __name__ == "__main__":
    main()

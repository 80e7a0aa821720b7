"""Length-bucketed batches (``data.bucket=true``) against random pad-to-max batches on a data set
with skewed sequence lengths, trained through the template in one process.

    .venv/bin/python scripts/bench/bucket.py [--small] [--epochs 5] [--repetitions 5] [--threads 1]
        [Hydra overrides of the run, e.g. model.encoder.hidden_size=256]

The data set is synthetic and seeded: lengths drawn from a log-normal distribution (median 40,
clipped to 10..1000, so most sequences are short and a few are long), three channels, four
classes told apart by the period of a noisy sine wave in the first channel (random phase). It is
written as ``.ts`` files and read through ``data.train_file``/``data.test_file``, the path a
user's own data takes. Each variant composes the default config (bidirectional LSTM, max
pooling, batch 16) and trains with the Lightning Trainer minus progress bar, logger and
checkpoints. Measured: the wall time of each epoch's training batches (validation excluded),
median over all epochs and repetitions, after one untimed warm-up epoch per variant; then test
accuracy after the same number of epochs. Repetition ``r`` uses seed ``seed + r`` for model
init and shuffling in every variant; variants alternate order between repetitions.

Batches: ``pad-to-max`` (random batches padded to their longest sequence, the default loader)
or ``bucketed`` (BucketBatchSampler). Encoder: ``packed`` (``model.encoder.impl=packed``:
pack_padded_sequence inside forward) or, with ``--padded``, the encoder's padded path
(``impl=padded``: fused kernels over the padded tensor, the backward direction over each
sequence reversed within its length; same outputs and gradients as packed).

``--write-docs`` writes the table into docs/benchmarks.md between the markers named
``bench:bucket`` followed by the Hydra overrides as typed, each after a ``:``
(``bench:bucket:trainer.accelerator=gpu`` for the GPU run).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

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
)
from lightning_harness import add_padded_arg, build, fit_timed, machine, seed_all

from rnnlab.data.sequences import SequenceDataModule

PERIODS = (4.0, 7.0, 12.0, 20.0)  # one class per period
# name -> (bucketed batches, the encoder's padded path instead of packing)
VARIANTS = {
    "pad-to-max, packed (default)": (False, False),
    "bucketed, packed": (True, False),
    "pad-to-max, padded path": (False, True),
    "bucketed, padded path": (True, True),
}
PAD = "pad-to-max, packed (default)"


def skewed_lengths(n: int, rng: np.random.Generator, median_len: float = 40.0) -> np.ndarray:
    """Heavy-tailed lengths: log-normal around ``median_len``, clipped to 10..1000."""
    return np.clip(np.round(rng.lognormal(math.log(median_len), 1.0, n)), 10, 1000).astype(int)


def write_skewed_ts(path: Path, n: int, seed: int) -> list[int]:
    """Write ``n`` labelled 3-channel sequences as a .ts file; return their lengths."""
    rng = np.random.default_rng(seed)
    lengths = skewed_lengths(n, rng)
    labels = rng.integers(len(PERIODS), size=n)
    rows = []
    for length, label in zip(lengths, labels, strict=True):
        t = np.arange(length)
        phase = rng.uniform(0, 2 * math.pi)
        signal = np.sin(2 * math.pi * t / PERIODS[label] + phase)
        channels = rng.normal(0.0, 0.7, size=(3, length))
        channels[0] += signal
        rows.append(":".join(",".join(f"{v:.4f}" for v in c) for c in channels) + f":{label}")
    header = (
        "@problemName skewed\n@timeStamps false\n@missing false\n@univariate false\n"
        f"@dimensions 3\n@equalLength false\n@classLabel true {' '.join(map(str, range(4)))}\n"
        "@data\n"
    )
    path.write_text(header + "\n".join(rows) + "\n")
    return lengths.tolist()


def batch_stats(loader: torch.utils.data.DataLoader, lengths: list[int]) -> tuple[int, float]:
    """For one epoch of ``loader``'s batches: recurrent steps run in sequence (the sum of each
    batch's longest length) and the share of the padded tensors that is padding."""
    steps = padded = 0
    for batch in loader.batch_sampler:
        longest = max(lengths[i] for i in batch)
        steps += longest
        padded += longest * len(batch)
    return steps, 1.0 - sum(lengths) / padded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(
        __doc__.splitlines()[0],
        "small data, 1 epoch, 1 repetition",
        5,
        epochs=5,
        overrides="Hydra overrides, e.g. model.encoder.hidden_size=256",
    )
    parser.add_argument("--train-size", type=int, default=800, help="official train split")
    parser.add_argument("--test-size", type=int, default=400)
    add_padded_arg(parser)
    small = {"epochs": 1, "repetitions": 1, "train_size": 120, "test_size": 60}
    return parse(parser, argv, small)


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the Hydra overrides, the device among
    them (``trainer.accelerator=gpu``)."""
    return args.overrides


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown table."""
    return run_script("bucket", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Time every variant on a data set written to a temporary folder; the report and its
    table."""
    with tempfile.TemporaryDirectory(prefix="bench-bucket-") as tmp:
        return bench(args, Path(tmp), argv)


def bench(args: argparse.Namespace, tmp: Path, argv: list[str]) -> tuple[str, str]:
    """Write the data set under ``tmp``, time every variant; the report and its table."""
    train_lengths = write_skewed_ts(tmp / "train.ts", args.train_size, args.seed)
    write_skewed_ts(tmp / "test.ts", args.test_size, args.seed + 1)

    names = [n for n, (_, padded) in VARIANTS.items() if args.padded or not padded]
    setups: dict[bool, tuple[DictConfig, SequenceDataModule]] = {}
    for bucket in (False, True):
        overrides = [
            "trainer.accelerator=cpu",
            f"data.train_file={tmp / 'train.ts'}",
            f"data.test_file={tmp / 'test.ts'}",
            f"data.bucket={str(bucket).lower()}",
            *args.overrides,
        ]
        cfg, datamodule, _ = build(overrides, args.seed, tmp)  # cfg.model knows the data now
        setups[bucket] = cfg, datamodule

    def run(name: str, seed: int, epochs: int) -> tuple[list[float], float]:
        bucket, padded = VARIANTS[name]
        cfg, datamodule = setups[bucket]
        seed_all(seed)
        datamodule.seed = seed  # the loaders' shuffling follows the repetition's seed
        model = instantiate(cfg.model)
        model.encoder.impl = "padded" if padded else "packed"
        timer, trainer = fit_timed(cfg, model, datamodule, max_epochs=epochs)
        tested = trainer.test(model, datamodule=datamodule, verbose=False)
        return timer.seconds, float(tested[0]["test/acc"])

    runs, load = alternate(
        names,
        args.repetitions,
        lambda rep, name: run(name, args.seed + rep, args.epochs),
        # untimed warm-up epoch, other batches than the timed runs'
        lambda name: run(name, args.seed + 1000, 1),
    )
    seconds = {name: [s for times, _ in rs for s in times] for name, rs in runs.items()}
    accuracy = {name: [acc for _, acc in rs] for name, rs in runs.items()}
    base = median(seconds[PAD])
    rows = []
    for name in names:
        datamodule = setups[VARIANTS[name][0]][1]
        lengths = [len(s) for s in datamodule.splits["train"][0]]
        steps, padding = batch_stats(datamodule.train_dataloader(), lengths)
        accs = accuracy[name]
        rows.append(
            [
                name,
                median(seconds[name]),
                base / median(seconds[name]),
                spread(seconds[name]),
                steps,
                100 * padding,
                statistics.mean(accs),
                min(accs),
                max(accs),
            ]
        )
    table = markdown_table(
        [
            "batches, encoder",
            "s per epoch (median)",
            "speed-up vs pad-to-max",
            "spread (max-min)/median",
            "recurrent steps per epoch",
            "padding %",
            "test acc (mean)",
            "test acc min",
            "test acc max",
        ],
        rows,
    )
    lengths = np.array(train_lengths)
    text = report(
        "bucket.py",
        argv,
        f"{machine()}; synthetic skewed set: {args.train_size} train (80 % fit, 20 % val) "
        f"/ {args.test_size} test sequences, lengths min {lengths.min()}, median "
        f"{int(np.median(lengths))}, mean {lengths.mean():.0f}, p95 "
        f"{int(np.percentile(lengths, 95))}, max {lengths.max()}; batch "
        f"{setups[False][0].data.batch_size}; {args.epochs} epochs x {args.repetitions} "
        f"repetitions (seeds differ per repetition); {load.describe()}",
        table,
    )
    return text, table


if __name__ == "__main__":
    main()

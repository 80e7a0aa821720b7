"""Data at scale: each task's data generated at x1, x10 and x100 its base size, and what a
training run on it costs: set-up seconds, first-step seconds, seconds per step, peak memory, and
how each grows with the data.

    .venv/bin/python scripts/bench/scale.py [--small] [--sizes 1 10 100] [--steps 20]
        [--memory-gib 6] [--tasks charlm forecast_csv classification]

Each (task, size) generates its data under a temporary folder (deleted afterwards), then runs a
fresh process (this script with ``--child``) under an address-space limit of ``--memory-gib``
GiB. That process composes the task's config as ``python -m rnnlab.train`` does, builds the
data and the model (the set-up, timed), and trains ``--steps`` steps on the config's Trainer
without validation, checkpoints or loggers, timing each step; its peak resident memory is the
process's maximum RSS. Base sizes (x1):

- ``charlm``: a 1 MB text of words of the Python reference documentation drawn at random
  (``experiment=charlm data.file=...``);
- ``forecast_csv``: 100 series of 1,000 weekly rows, one target (``experiment=forecast_csv``
  with ``data.series_column=id``);
- ``classification``: 500 training and 125 test sequences of 3 channels, lengths 50 to 500,
  two classes, in .ts files (``data.train_file``/``data.test_file``).

Every task's data has a disk cache (``data.cache_dir`` in the temporary folder): each size
runs a second fresh process on the cache the first one built (``first step with the
cache``). The series' CSV may exceed the default ``data.max_file_mb`` (x1000 is 1.9 GB).

The growth columns fit ``log(value) = a + b log(size)`` over the sizes: ``b`` near 1 is linear,
near 0 flat. A run that exceeds the memory limit or fails shows its error instead of numbers.

``--write-docs`` writes the table into docs/benchmarks.md between the markers named
``bench:scale``; only the default sizes and tasks are written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bench_parser, markdown_table, parse, report, run_script

TASKS = ("charlm", "forecast_csv", "classification")
_GIB = 1 << 30


# --- data --------------------------------------------------------------------------------------
def write_text(folder: Path, size: int) -> list[str]:
    """``size`` MB of words of the Python reference documentation drawn at random (seeded)."""
    from rnnlab.data.corpus import default_corpus

    words = np.array(default_corpus()[0].split())
    rng = np.random.default_rng(0)
    path, done = folder / "corpus.txt", 0
    with path.open("w", encoding="utf-8") as out:
        while done < size * 1_000_000:
            line = " ".join(rng.choice(words, 20_000)) + "\n"
            out.write(line)
            done += len(line)
    return ["experiment=charlm", f"data.file={path}", f"data.cache_dir={folder / 'cache'}"]


def write_series(folder: Path, size: int) -> list[str]:
    """``100 * size`` series of 1,000 weekly rows: a yearly cycle, a trend and noise."""
    rng = np.random.default_rng(0)
    path, steps = folder / "series.csv", np.arange(1000)
    with path.open("w", encoding="utf-8") as out:
        out.write("id,time,value\n")
        for series in range(100 * size):
            level, phase = rng.normal(10, 3), rng.uniform(0, 2 * np.pi)
            values = level + 0.01 * steps + np.sin(2 * np.pi * steps / 52 + phase)
            values += rng.normal(0, 0.3, len(steps))
            out.writelines(f"s{series},{t},{v:.4f}\n" for t, v in zip(steps, values, strict=True))
    settings = ["data.series_column=id", "data.time_column=time", "data.target_columns=[value]"]
    cache = [f"data.cache_dir={folder / 'cache'}", "data.max_file_mb=4096"]
    return ["experiment=forecast_csv", f"data.file={path}", *settings, *cache]


TS_HEADER = (
    "@problemName scale\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 3\n"
    "@equalLength false\n@classLabel true a b\n@data\n"
)


def _ts_file(path: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write(TS_HEADER)
        for _ in range(count):
            label = int(rng.integers(2))
            steps = np.arange(int(rng.integers(50, 501)))
            channels = [
                np.sin(steps / (5 + 3 * c + label)) + rng.normal(0, 0.5, len(steps))
                for c in range(3)
            ]
            out.write(":".join(",".join(f"{v:.3f}" for v in c) for c in channels))
            out.write(f":{'ab'[label]}\n")


def write_sequences(folder: Path, size: int) -> list[str]:
    """``500 * size`` training and ``125 * size`` test sequences in .ts files."""
    train, test = folder / "scale_TRAIN.ts", folder / "scale_TEST.ts"
    _ts_file(train, 500 * size, 0)
    _ts_file(test, 125 * size, 1)
    cache = f"data.cache_dir={folder / 'cache'}"
    return [f"data.train_file={train}", f"data.test_file={test}", cache]


WRITERS = {"charlm": write_text, "forecast_csv": write_series, "classification": write_sequences}
# tasks whose data has a disk cache: a second run reuses what the first built
CACHED = {"charlm", "forecast_csv", "classification"}


# --- the measured run (a fresh process) --------------------------------------------------------
def child(overrides: list[str], steps: int, output: str) -> dict[str, Any]:
    """In this process: the set-up and ``steps`` training steps, timed; the measurements."""
    import lightning as L
    from lightning_harness import compose_train, lean_trainer, seed_all

    from rnnlab.callbacks.run_state import seconds_since_process_start
    from rnnlab.train import build_data_and_model

    class StepTimes(L.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.first_step_s: float | None = None

        def on_train_batch_end(self, *args: Any) -> None:
            self.ends.append(time.perf_counter())
            if self.first_step_s is None:
                self.first_step_s = seconds_since_process_start()

    cfg = compose_train(["seed=0", *overrides], output)
    seed_all(0)
    started = time.perf_counter()
    datamodule, model = build_data_and_model(cfg)
    setup_s = time.perf_counter() - started
    timer = StepTimes()
    trainer = lean_trainer(cfg, [timer], max_steps=steps, max_epochs=-1, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    gaps = np.diff(timer.ends)
    return {
        "setup_s": setup_s,
        "first_step_s": timer.first_step_s,
        "step_s": float(statistics.median(gaps)) if len(gaps) else math.nan,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _GIB,
    }


def measure_one(task: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Generate ``task``'s data at ``size``, run the child on it; its measurements or error."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        overrides = WRITERS[task](Path(folder), size)
        file_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
        limit = int(args.memory_gib * _GIB)
        command = [sys.executable, __file__, "--child", str(args.steps), folder, *overrides]
        runs = 2 if task in CACHED else 1  # the second with the cache the first built
        done = [
            subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
            )
            for _ in range(runs)
        ]
    failed = next((run for run in done if run.returncode != 0), None)
    if failed is not None:
        lines = [line for line in failed.stderr.splitlines() if line.strip()]
        return {"file_mb": file_mb, "error": (lines[-1] if lines else f"exit {failed.returncode}")}
    first, *cached = (json.loads(run.stdout.strip().splitlines()[-1]) for run in done)
    found = {"file_mb": file_mb, **first, "cached_first_step_s": None}
    if cached:
        found["cached_first_step_s"] = cached[0]["first_step_s"]
        found["cached_peak_gib"] = cached[0]["peak_gib"]
    return found


def growth(sizes: list[int], values: list[float]) -> float:
    """The exponent b of ``value ~ size ** b`` (least squares on logs); NaN with too few."""
    pairs = [(s, v) for s, v in zip(sizes, values, strict=True) if v and v > 0 and math.isfinite(v)]
    if len(pairs) < 2:
        return math.nan
    x, y = (np.log([p[i] for p in pairs]) for i in (0, 1))
    return float(np.polyfit(x, y, 1)[0])


# --- the script --------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser(__doc__.splitlines()[0], "sizes x1 and x10 only", 1, threads=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per run")
    parser.add_argument("--memory-gib", type=float, default=6.0, help="address-space limit")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    return parse(parser, argv, small={"sizes": [1, 10]})


def docs_variant(args: argparse.Namespace) -> list[str]:
    if args.sizes != [1, 10, 100] or args.tasks != list(TASKS):
        raise SystemExit("error: --write-docs takes the default --sizes and --tasks")
    return []


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    rows, fits = [], []
    for task in args.tasks:
        runs = [measure_one(task, size, args) for size in args.sizes]
        for size, run in zip(args.sizes, runs, strict=True):
            if "error" in run:
                rows.append([task, f"x{size}", run["file_mb"], run["error"], "", "", "", ""])
            else:
                cells = [run[k] for k in ("setup_s", "first_step_s", "step_s", "peak_gib")]
                cached = run["cached_first_step_s"]
                rows.append(
                    [task, f"x{size}", run["file_mb"], *cells, "" if cached is None else cached]
                )
        fine = [(s, r) for s, r in zip(args.sizes, runs, strict=True) if "error" not in r]
        sizes = [s for s, _ in fine]
        fits.append(
            [
                task,
                *(
                    growth(sizes, [r[k] for _, r in fine])
                    for k in ("setup_s", "step_s", "peak_gib")
                ),
            ]
        )
    table = markdown_table(
        [
            "task",
            "size",
            "files MB",
            "set-up s",
            "first step s",
            "s / step",
            "peak RSS GiB",
            "first step with the cache s",
        ],
        rows,
    )
    growth_table = markdown_table(
        ["task", "set-up growth b", "s / step growth b", "peak RSS growth b"], fits
    )
    tables = f"{table}\n\n{growth_table}"
    text = report(
        "scale.py",
        argv,
        f"{args.steps} steps per run, one thread, each run a fresh process limited to "
        f"{args.memory_gib:g} GiB of address space; growth: value ~ size ** b",
        tables,
    )
    return text, tables


def main(argv: list[str] | None = None) -> str:
    return run_script("scale", argv, parse_args, docs_variant, measure)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        steps, folder, *overrides = sys.argv[2:]
        print(json.dumps(child(overrides, int(steps), folder)))
    else:
        main()

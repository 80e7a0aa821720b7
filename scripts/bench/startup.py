"""Start-up: process start to the end of the first optimiser step of the default job, beside
what importing the libraries every run needs costs on its own.

    .venv/bin/python scripts/bench/startup.py [--small] [--repetitions 5] [Hydra overrides]

Every measurement is a fresh interpreter. Each repetition runs, in alternating order,
``python -m rnnlab.train trainer.max_epochs=1 test=false logger=none`` (its own
``time/startup_to_first_step_s`` from metrics.json: process start to the end of the first
optimiser step), ``python -c "import torch"`` and ``python -c "import lightning.pytorch,
torchmetrics"`` (wall time of the whole process). One untimed round first fills the file cache.

``--write-docs`` writes the table into docs/benchmarks.md between the markers named
``bench:startup`` followed by the Hydra overrides as typed, each after a ``:``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import alternate, bench_parser, markdown_table, median, parse, report, run_script

TRAIN = "python -m rnnlab.train: process start to the end of the first optimiser step"
IMPORTS = {
    "python -c 'import torch' (whole process)": "import torch",
    "python -c 'import lightning.pytorch, torchmetrics' (whole process)": (
        "import lightning.pytorch, torchmetrics"
    ),
}


def first_step_seconds(overrides: list[str]) -> float:
    """One default run's own start-up timer (it trains one epoch; no test, no logger)."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as out:
        command = [sys.executable, "-m", "rnnlab.train", "trainer.max_epochs=1", "test=false"]
        command += ["logger=none", f"hydra.run.dir={out}", *overrides]
        subprocess.run(command, check=True, capture_output=True)
        value = json.loads((Path(out) / "metrics.json").read_text())["time/startup_to_first_step_s"]
    if value is None:
        raise RuntimeError("the run recorded no start-up time (no /proc on this system?)")
    return float(value)


def import_seconds(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, capture_output=True)
    return time.perf_counter() - start


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser(
        __doc__.splitlines()[0],
        "1 repetition, no warm-up round",
        5,
        threads=False,
        overrides="Hydra overrides of the training run",
    )
    return parse(parser, argv, small={"repetitions": 1})


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the Hydra overrides."""
    return args.overrides


def main(argv: list[str] | None = None) -> str:
    """Run the measurements; print and return the Markdown table."""
    return run_script("startup", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Time every command in fresh processes; the report and its table."""

    def seconds(name: str) -> float:
        if name == TRAIN:
            return first_step_seconds(args.overrides)
        return import_seconds(IMPORTS[name])

    warm_up = None if args.small else seconds  # one round fills the file cache
    runs, load = alternate([TRAIN, *IMPORTS], args.repetitions, lambda _, n: seconds(n), warm_up)
    table = markdown_table(
        ["measured", "s (median)", "s (min)", "s (max)"],
        [[name, median(s), min(s), max(s)] for name, s in runs.items()],
    )
    text = report(
        "startup.py",
        argv,
        f"{args.repetitions} repetitions, each a fresh process; {load.describe()}",
        table,
    )
    return text, table


if __name__ == "__main__":
    main()

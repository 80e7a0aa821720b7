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
from docs_page import add_write_docs_arg, docs_block
from harness import CpuLoad, command_line, markdown_table, median, run_order

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1 repetition, no warm-up round")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the training run")
    add_write_docs_arg(parser)
    return parser.parse_args(argv)


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the Hydra overrides."""
    return args.overrides


def main(argv: list[str] | None = None) -> str:
    """Run the measurements; print and return the Markdown table."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    docs = docs_block("startup", docs_variant(args), args.small) if args.write_docs else None
    repetitions = 1 if args.small else args.repetitions

    def measure(name: str) -> float:
        if name == TRAIN:
            return first_step_seconds(args.overrides)
        return import_seconds(IMPORTS[name])

    names = [TRAIN, *IMPORTS]
    if not args.small:
        for name in names:
            measure(name)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    with CpuLoad() as load:
        for _, name in run_order(names, repetitions):
            seconds[name].append(measure(name))
    table = markdown_table(
        ["measured", "s (median)", "s (min)", "s (max)"],
        [[name, median(s), min(s), max(s)] for name, s in seconds.items()],
    )
    text = "\n\n".join(
        [
            f"command: {command_line('startup.py', argv)}",
            f"{repetitions} repetitions, each a fresh process; {load.describe()}",
            table,
        ]
    )
    print(text)
    if docs:
        docs.write(table)
    return text


if __name__ == "__main__":
    main()

"""Threads on a shared machine: the default job's wall time idle and beside one busy process, and
their ratio, for each way of choosing its threads.

    .venv/bin/python scripts/bench/threads.py [--small] [--repetitions 2] [Hydra overrides]

Each measurement is a fresh ``python -m rnnlab.train trainer.max_epochs=1 test=false
logger=none`` (the default job; the overrides follow) run with ``OMP_NUM_THREADS`` unset, as a
user's shell has it, once on an otherwise idle machine and once while this script keeps one
other process busy (a Python loop, pinned to nothing: it competes for any core). The variants:

- ``threads=null`` (the default): as many threads as CPUs the process may use, with the
  ``OMP_WAIT_POLICY=PASSIVE`` that rnnlab sets where the environment has none: OpenMP threads
  sleep at the end of a parallel region instead of spinning for the next one;
- the same with ``OMP_WAIT_POLICY=ACTIVE`` in the environment: the threads spin;
- the same with ``OMP_WAIT_POLICY=`` (empty: OpenMP's own default, which spins a while before it
  sleeps; what a job got before rnnlab set the policy);
- ``threads=1``.

It reports each run's wall and CPU seconds (the job's user + system time: spinning threads burn
CPU without progress) and the busy/idle ratio of wall times. Other processes' load on the
machine while it ran is printed beside the table.

``--write-docs`` writes the table into docs/benchmarks.md between the markers named
``bench:threads`` followed by the Hydra overrides as typed, each after a ``:``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import alternate, bench_parser, markdown_table, median, parse, report, run_script

VARIANTS = {
    "threads=null (default: OMP_WAIT_POLICY=PASSIVE)": ([], {}),
    "threads=null, OMP_WAIT_POLICY=ACTIVE": ([], {"OMP_WAIT_POLICY": "ACTIVE"}),
    "threads=null, OMP_WAIT_POLICY= (OpenMP's default)": ([], {"OMP_WAIT_POLICY": ""}),
    "threads=1": (["threads=1"], {}),
}
CONDITIONS = ("idle", "beside a busy process")


@contextlib.contextmanager
def busy_neighbour(active: bool) -> Iterator[None]:
    """One other process spinning on the CPU while the block runs (nothing when not
    ``active``)."""
    if not active:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start spinning
        yield
    finally:
        spinner.kill()
        spinner.wait()


def job_seconds(overrides: list[str], environ: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one default job in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(environ)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as out:
        command = [sys.executable, "-m", "rnnlab.train", "trainer.max_epochs=1", "test=false"]
        command += ["logger=none", f"hydra.run.dir={out}", *overrides]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser(
        __doc__.splitlines()[0],
        "1 repetition",
        2,
        threads=False,
        overrides="Hydra overrides of the training run",
    )
    return parse(parser, argv, small={"repetitions": 1})


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's table apart in the docs: the Hydra overrides."""
    return args.overrides


def main(argv: list[str] | None = None) -> str:
    """Run the measurements; print and return the Markdown table."""
    return run_script("threads", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Every variant idle and beside a busy process, alternating; the report and its table."""
    names = [f"{variant} | {condition}" for variant in VARIANTS for condition in CONDITIONS]

    def one(_: int, name: str) -> tuple[float, float]:
        variant, condition = name.split(" | ")
        overrides, environ = VARIANTS[variant]
        with busy_neighbour(condition != "idle"):
            return job_seconds([*overrides, *args.overrides], environ)

    runs, load = alternate(names, args.repetitions, one)
    rows = []
    for variant in VARIANTS:
        idle, busy = (runs[f"{variant} | {c}"] for c in CONDITIONS)
        idle_wall, busy_wall = median([w for w, _ in idle]), median([w for w, _ in busy])
        rows.append(
            [
                variant,
                idle_wall,
                median([c for _, c in idle]),
                busy_wall,
                median([c for _, c in busy]),
                f"{busy_wall / idle_wall:.2f}x",
            ]
        )
    table = markdown_table(
        [
            "threads",
            "idle: wall s",
            "idle: CPU s",
            "beside a busy process: wall s",
            "busy: CPU s",
            "busy / idle",
        ],
        rows,
    )
    cores = os.cpu_count()
    text = report(
        "threads.py",
        argv,
        f"{args.repetitions} repetition(s) per cell (median), each a fresh process on {cores} "
        f"cores; the busy process is one Python loop; {load.describe()} (the busy process "
        "included)",
        table,
    )
    return text, table


if __name__ == "__main__":
    main()

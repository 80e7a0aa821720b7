"""The harness every benchmark script shares: its command line, the run around what it measures
(``--write-docs`` checked first, logs quieted, threads set, the report printed and its tables
written), the alternating repetitions, statistics and Markdown tables.

Standard library and torch only: ``encoder_paths.py`` runs where only torch is installed.
``lightning_harness.py`` adds what the scripts that train through Lightning share. Not a package:
the scripts import it from their own folder."""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import docs_page
import torch

T = TypeVar("T")


def bench_parser(
    description: str,
    small: str,
    repetitions: int,
    *,
    epochs: int | None = None,
    epochs_help: str | None = None,
    threads: bool = True,
    overrides: str | None = None,
) -> argparse.ArgumentParser:
    """The options the benchmarks share: ``--small`` (``small`` says what it runs),
    ``--repetitions``; ``--epochs`` and ``--seed`` where ``epochs`` is given (the scripts that
    train); ``--threads`` unless ``threads`` is false; the Hydra overrides where ``overrides``
    (their help) is given. ``parse`` adds ``--write-docs``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help=small)
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    parser.add_argument("--repetitions", type=int, default=repetitions)
    if epochs is not None:
        parser.add_argument("--seed", type=int, default=42)
    if threads:
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="torch intra-op threads (default: torch's own choice, one per core)",
        )
    if overrides is not None:
        parser.add_argument("overrides", nargs="*", help=overrides)
    return parser


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, small: Mapping[str, Any]
) -> argparse.Namespace:
    """Add ``--write-docs`` and parse ``argv``; with ``--small``, the options in ``small`` take
    its values."""
    docs_page.add_write_docs_arg(parser)
    args = parser.parse_args(argv)
    if args.small:
        vars(args).update(small)
    return args


def run_script(
    script: str,
    argv: list[str] | None,
    parse_args: Callable[[list[str]], argparse.Namespace],
    docs_variant: Callable[[argparse.Namespace], list[str]],
    measure: Callable[[argparse.Namespace, list[str]], tuple[str, str]],
) -> str:
    """``scripts/bench/<script>.py``'s ``main``: parse ``argv`` (default: the command line),
    check where ``--write-docs`` will write before anything is measured, quiet the logs, set the
    threads, ``measure`` (the report and the tables in it), print the report, write the tables;
    returns the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    docs = docs_page.docs_block(script, docs_variant(args), args.small) if args.write_docs else None
    quiet()
    set_threads(vars(args).get("threads"))  # startup.py times fresh processes: no --threads
    text, tables = measure(args, argv)
    print(text, flush=True)
    if docs is not None:
        docs.write(tables)
    return text


def set_threads(threads: int | None) -> None:
    # With as many threads as cores, a busy neighbour process stalls every parallel region, and
    # small-op workloads (the packed LSTM) slow down by orders of magnitude; one thread is the
    # robust choice on a shared machine, the default is what a user gets.
    if threads:
        torch.set_num_threads(threads)


def quiet() -> None:
    """Silence Lightning's per-fit info lines and known warnings: they would bury the table."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work, so wall-clock timers measure it (no-op on the CPU)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def run_order(names: Sequence[str], repetitions: int) -> Iterator[tuple[int, str]]:
    """``(repetition, name)`` pairs, forward order on even repetitions and reversed on odd ones
    (A B C, C B A, ...), so slow drift of the machine load hits every variant alike."""
    for rep in range(repetitions):
        for name in names if rep % 2 == 0 else reversed(names):
            yield rep, name


def alternate(
    names: Sequence[str],
    repetitions: int,
    measure: Callable[[int, str], T],
    warm_up: Callable[[str], object] | None = None,
) -> tuple[dict[str, list[T]], CpuLoad]:
    """``warm_up`` each variant once, untimed; then ``measure(repetition, name)`` each variant
    ``repetitions`` times in ``run_order``. Each variant's results, in the order of ``names``,
    and the load other processes put on the machine meanwhile."""
    if warm_up is not None:
        for name in names:
            warm_up(name)
    results: dict[str, list[T]] = {name: [] for name in names}
    with CpuLoad() as load:
        for rep, name in run_order(names, repetitions):
            results[name].append(measure(rep, name))
    return results, load


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how noisy the repetitions of one variant were."""
    return (max(values) - min(values)) / median(values) if len(values) > 1 else 0.0


class CpuLoad:
    """Context manager: CPU used by *other* processes on this machine meanwhile, in cores on
    average (all busy time in /proc/stat minus this process's own), to report the noise."""

    def __init__(self) -> None:
        self.other_cores = math.nan
        self._start: tuple[float, float, float] | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(ticks[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")  # + steal
        own = sum(os.times()[:4])
        return time.perf_counter(), busy, own

    def __enter__(self) -> CpuLoad:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        if self._start is not None and end is not None and end[0] > self._start[0]:
            wall, busy, own = (e - s for e, s in zip(end, self._start, strict=True))
            self.other_cores = max(0.0, (busy - own) / wall)

    def describe(self) -> str:
        return (
            f"other processes used {self.other_cores:.2f} of {os.cpu_count()} cores on average "
            "meanwhile"
        )


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run, with the interpreter as typed from the checkout."""
    python = sys.executable
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    return shlex.join([python, f"scripts/bench/{script}", *argv])


def report(script: str, argv: Sequence[str], *paragraphs: str) -> str:
    """A printed report: the command that reproduces the run, then ``paragraphs``, a blank line
    apart."""
    return "\n\n".join([f"command: {command_line(script, argv)}", *paragraphs])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3f}" if abs(value) >= 0.1 else f"{value:.3g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

"""Pruning: the wall time of one seeded Optuna search run to the end of every trial, beside
the same search with a pruner, and whether both find the same best trial.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench/prune_search.py [--small] \\
        [--pruner median] [--trials 12] [--epochs 30] [--repetitions 1] [Hydra overrides]

The toy search draws only the learning rate, log-uniform over 1e-3 to 1e3, so that most
trials' rates are absurd (the loss explodes in the first epoch) and a few train well; the other
settings are fixed. Its random sampler is seeded: both searches run the same settings in the
same order whatever the pruner stops, so their best trials can be compared by number. Each
search is a fresh ``python -m rnnlab.train hparams_search=optuna`` process, timed whole
(start-up included, as a user waits for it), in alternating order over the repetitions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import alternate, bench_parser, markdown_table, median, parse, report, run_script

# One setting searched; the rest fixed, a single-layer GRU on JapaneseVowels.
TOY = [
    "hparams_search=optuna",
    "hydra/sweeper/sampler=random",
    "model.optimizer.lr=tag(log, interval(0.001, 1000))",
    "model.encoder.cell=gru",
    "model.encoder.hidden_size=32",
    "model.encoder.num_layers=1",
    "model.optimizer.weight_decay=0",
    "model.head_dropout=0",
    "logger=none",
    "trainer.enable_progress_bar=false",
]
UNPRUNED = "none"
# The median pruner compares from the fourth trial on (its default waits for five).
PRUNER_SETTINGS = {"median": ["hydra.sweeper.pruner.n_startup_trials=3"]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser(
        __doc__.splitlines()[0],
        "6 trials of 6 epochs, one repetition",
        1,
        epochs=30,
        epochs_help="epochs per trial that runs to its end (trainer.max_epochs)",
        threads=False,
        overrides="Hydra overrides of both searches",
    )
    parser.add_argument("--trials", type=int, default=12, help="trials per search")
    parser.add_argument(
        "--pruner",
        default="median",
        choices=["median", "successive_halving", "hyperband"],
        help="the pruner of the pruned search (hydra/sweeper/pruner=...)",
    )
    parser.set_defaults(seed=95)
    return parse(parser, argv, small={"trials": 6, "epochs": 6, "repetitions": 1})


def docs_variant(args: argparse.Namespace) -> list[str]:
    return [args.pruner, *args.overrides]


def main(argv: list[str] | None = None) -> str:
    """Run both searches; print and return the report."""
    return run_script("prune_search", argv, parse_args, docs_variant, measure)


def search(args: argparse.Namespace, pruner: str, folder: Path) -> tuple[float, dict[str, Any]]:
    """One whole search in a fresh process: its wall time and what its study holds."""
    import optuna

    sweep = folder / f"{pruner}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "rnnlab.train", *TOY, f"hydra/sweeper/pruner={pruner}"]
    command += PRUNER_SETTINGS.get(pruner, [])
    command += [f"hydra.sweeper.n_trials={args.trials}", f"trainer.max_epochs={args.epochs}"]
    command += [f"hydra.sweeper.sampler.seed={args.seed}", f"hydra.sweep.dir={sweep}"]
    command += args.overrides
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["RNNLAB_LOG_DIR"] = str(folder / "logs")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=folder)
    seconds = time.perf_counter() - start
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal"))
    )
    study = optuna.load_study(study_name="optuna", storage=storage)
    states = [t.state.name.lower() for t in study.trials]
    best = study.best_trial
    return seconds, {
        "completed": states.count("complete"),
        "pruned": states.count("pruned"),
        "failed": states.count("fail"),
        "best": (best.number, best.params["model.optimizer.lr"], best.value),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
    }


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    variants = [UNPRUNED, args.pruner]
    studies: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:

        def run(_: int, pruner: str) -> float:
            seconds, studies[pruner] = search(args, pruner, Path(tmp))
            return seconds

        times, load = alternate(variants, args.repetitions, run)
    rows = []
    for pruner in variants:
        found = studies[pruner]
        number, lr, value = found["best"]
        rows.append([
            "no pruning" if pruner == UNPRUNED else pruner, median(times[pruner]),
            found["completed"], found["pruned"], found["failed"], found["epochs"],
            number, f"{lr:.4g}", value,
        ])  # fmt: skip
    table = markdown_table(
        ["search", "wall s (median)", "completed", "pruned", "failed", "epochs trained",
         "best trial", "its lr", "its val/loss_best"],
        rows,
    )  # fmt: skip
    ratio = median(times[UNPRUNED]) / median(times[args.pruner])
    same = studies[UNPRUNED]["best"] == studies[args.pruner]["best"]
    verdict = (
        f"pruning ({args.pruner}) cut the search's wall time {ratio:.2f}x; "
        f"best trial {'the same' if same else 'DIFFERENT'} in both"
    )
    what = (
        f"{args.trials} trials of up to {args.epochs} epochs, random sampler seed {args.seed}, "
        f"{args.repetitions} repetition(s) per search, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', '1')}; {load.describe()}"
    )
    return report("prune_search.py", argv, what, table, verdict), table


if __name__ == "__main__":
    main()

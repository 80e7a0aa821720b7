"""Run one experiment over several seeds as a user would (one process each) and summarise.

    python scripts/seeds.py --seeds 1 2 3 4 5 -- experiment=bilstm
    python scripts/seeds.py --metrics test/rmse test/rmse_train_mean -- experiment=covid3month
    OMP_NUM_THREADS=1 python scripts/seeds.py --jobs 3 --seeds 1 2 3 -- experiment=charlm

Each run is ``python -m rnnlab.train seed=N <overrides>`` in its own process, so the wall time
includes interpreter start-up, imports and data loading. Prints a Markdown table: per-seed test
metrics, wall time and time from process start to the first optimiser step, then mean and spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METRICS = ["test/acc", "test/f1"]


def train_command(seed: int, overrides: list[str], run_dir: Path) -> list[str]:
    """The command that trains one seed into ``run_dir`` (its own process)."""
    return [
        sys.executable,
        "-m",
        "rnnlab.train",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]


WALL_FILE = "wall.json"


def run_seed(seed: int, overrides: list[str], out: Path) -> dict[str, float]:
    """Train one seed into ``out/seed<N>``; its metrics.json plus ``wall_s``, the command's
    whole time."""
    run_dir = out / f"seed{seed}"
    started = time.perf_counter()
    subprocess.run(train_command(seed, overrides, run_dir), check=True, stdout=subprocess.DEVNULL)
    wall = {"wall_s": time.perf_counter() - started}
    # beside metrics.json, so that a run read again later (results.py --reuse) keeps its time
    (run_dir / WALL_FILE).write_text(json.dumps(wall))
    return {**json.loads((run_dir / "metrics.json").read_text()), **wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("--metrics", nargs="+", default=METRICS, help="metrics.json keys to show")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="seeds run at once (their wall times then share the machine; with several, give "
        "each one torch thread: OMP_NUM_THREADS=1)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, after --")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rnnlab-seeds-"))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = pool.map(lambda seed: run_seed(seed, args.overrides, out), args.seeds)
        rows = dict(zip(args.seeds, done, strict=True))
    keys = [*args.metrics, "time/startup_to_first_step_s", "wall_s"]
    print(f"overrides: {' '.join(args.overrides) or '(defaults)'}; runs in {out}\n")
    print("| seed | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for seed, metrics in rows.items():
        print(
            f"| {seed} | " + " | ".join(f"{metrics.get(k, float('nan')):.4f}" for k in keys) + " |"
        )
    summaries = (("mean", statistics.mean), ("sd", statistics.stdev))
    for name, fn in summaries[: 1 + (len(rows) > 1)]:
        cells = [fn([m[k] for m in rows.values() if k in m]) for k in keys]
        print(f"| {name} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")


if __name__ == "__main__":
    main()

"""The default recipe over the UCR/UEA classification sets that ship inside sktime, beside
published accuracies on the same official train/test splits.

    OMP_NUM_THREADS=1 python scripts/archive.py
    python scripts/archive.py --datasets ArrowHead GunPoint --seeds 1 2 3 --out runs/archive
    python scripts/archive.py --datasets ACSF1 PLAID --seeds 1 -- trainer.max_epochs=2

Every run is ``python -m rnnlab.train data.name=<set> seed=N <overrides>`` in its own process
(``run_seed`` of scripts/seeds.py), so s/run includes start-up, imports and data loading; s/epoch
is the rest of the run (from the end of its first optimiser step: training, validation,
checkpoints, the test pass) over the epochs it ran, so start-up + s/epoch x max_epochs estimates
a full run from a short one (``-- trainer.max_epochs=2``).
Prints one Markdown table: the data set's shape, test accuracy over the seeds, time, and the
published accuracies of scripts/archive_published.csv, each marked with its source (listed under
the table). "n/a": no published number on the default split was found for that set and method.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from seeds import run_seed

from rnnlab.data.ucr import load_archive, shipped_names

PUBLISHED = Path(__file__).with_name("archive_published.csv")
METHODS = ["ROCKET", "InceptionTime", "ResNet", "FCN", "1-NN DTW"]
# What each source id in archive_published.csv stands for. Every number is an accuracy on the
# data set's official train/test split (no resamples); how many runs it averages is said here.
SOURCES = {
    "rocket": "Dempster et al. 2020 (ROCKET): github.com/angus924/rocket results/results_ucr.csv "
    "('Training / Test Split'), accuracy_mean over its runs (10 by default)",
    "inceptiontime": "Ismail Fawaz et al. 2020 (InceptionTime): github.com/hfawaz/InceptionTime "
    "results-InceptionTime-128.csv, the 5-network ensemble, UCR 2018 archive",
    "inceptiontime-mts": "github.com/hfawaz/InceptionTime results-mts.csv (the InceptionTime "
    "ensemble on the UEA multivariate archive)",
    "dl4tsc-ucr85": "Ismail Fawaz et al. 2019 (deep learning for TSC review): "
    "github.com/hfawaz/dl-4-tsc results/results-uea-avg-std.csv, mean over runs, UCR 2015 "
    "archive (85 sets)",
    "dl4tsc-ucr128": "github.com/hfawaz/dl-4-tsc results/results-ucr-128.csv, mean of its 5 "
    "runs (iterations 0-4), UCR 2018 archive",
    "dl4tsc-mts": "Ismail Fawaz et al. 2019: github.com/hfawaz/dl-4-tsc "
    "results/results-mts-avg-std.csv, mean over runs, Baydogan's multivariate archive",
    "tsml-mts": "Ruiz et al. 2021 (multivariate bake off): "
    "github.com/time-series-machine-learning/tsml-eval "
    "results/tsml/MultivariateDefaultTrainTest.csv, one run; 1-NN DTW is DTW_D (dependent)",
    "ucr-summary": "Dau et al. 2019 (UCR archive 2018): the archive's DataSummary.csv, column "
    "'DTW (w=100)' (full-window 1-NN DTW), accuracy = 1 - error; read from its copy at "
    "github.com/Chang-George-Dong/TrojanTime DataSummary.csv",
}


def published() -> dict[tuple[str, str], tuple[float, str]]:
    """(data set, method) -> (accuracy, source id), from scripts/archive_published.csv."""
    with PUBLISHED.open(newline="") as rows:
        return {
            (row["dataset"], row["method"]): (float(row["accuracy"]), row["source"])
            for row in csv.DictReader(rows)
        }


def describe(name: str) -> dict[str, str]:
    """The shape of a data set: split sizes, length range, channels and classes."""
    train, train_labels = load_archive(name, "train")
    assert train_labels is not None  # load_archive reads class labels or raises
    test, _ = load_archive(name, "test")
    lengths = [len(x) for x in train + test]
    short, long = min(lengths), max(lengths)
    return {
        "train": str(len(train)),
        "test": str(len(test)),
        "length": str(short) if short == long else f"{short}-{long}",
        "channels": str(train[0].shape[1]),
        "classes": str(len(set(train_labels))),
    }


def mean_sd(values: list[float], digits: int) -> str:
    """'mean ± sd' over the seeds; the mean alone for one seed (its spread is unknown)."""
    mean = f"{statistics.mean(values):.{digits}f}"
    return f"{mean} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else mean


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", default=None, help="default: every shipped classification set"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, after --")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    names = args.datasets or shipped_names()
    out = args.out or Path(tempfile.mkdtemp(prefix="rnnlab-archive-"))
    known = published()
    for key, (_, source) in known.items():
        if source not in SOURCES:
            raise SystemExit(f"{PUBLISHED}: {key} names unknown source {source!r}")
    # footnote [i] is the i-th source of SOURCES whichever sets a run covers, so the tables of
    # separate runs (other sets, other overrides) cite alike and can be put side by side
    numbers = {source: i for i, source in enumerate(SOURCES, start=1)}
    cited: set[str] = set()

    def cell(name: str, method: str) -> str:
        if (name, method) not in known:
            return "n/a"
        accuracy, source = known[name, method]
        cited.add(source)
        return f"{accuracy:.3f} [{numbers[source]}]"

    head = ["data set", "train", "test", "length", "channels", "classes", "seeds"]
    head += ["test acc (mean ± sd)", "min", "epochs", "s/epoch", "s/run", *METHODS]
    lines = [
        f"command: {shlex.join(['scripts/archive.py', *argv])}",
        f"overrides: {' '.join(args.overrides) or '(defaults)'}; runs in {out}",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for name in names:
        shape = describe(name)
        runs = [
            run_seed(seed, [f"data.name={name}", *args.overrides], out / name)
            for seed in args.seeds
        ]
        accuracy = [run["test/acc"] for run in runs]
        epochs = [run["epochs"] for run in runs]
        per_epoch = [
            (run["wall_s"] - run["time/startup_to_first_step_s"]) / run["epochs"] for run in runs
        ]
        cells = [name, *shape.values(), " ".join(map(str, args.seeds))]
        cells += [mean_sd(accuracy, 3), f"{min(accuracy):.3f}", mean_sd(epochs, 0)]
        cells += [mean_sd(per_epoch, 2), mean_sd([run["wall_s"] for run in runs], 0)]
        cells += [cell(name, method) for method in METHODS]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr)  # progress: the row as soon as its runs end
    lines.append("")
    lines.append(
        "Published accuracies are on each set's official train/test split (not resample means); "
        "n/a: none found. Sources:"
    )
    lines += [f"[{numbers[source]}] {SOURCES[source]}" for source in SOURCES if source in cited]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()

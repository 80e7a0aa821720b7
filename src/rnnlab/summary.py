"""Summarise a Hydra multirun: ``python -m rnnlab.summary logs/train/multiruns/<date_time>``.

One row per job: the overrides that vary across the sweep, the job's status (completed, failed
with its reason, or incomplete when it never finished), the objective (the monitored metric's
best validation value) and its final test metrics. The best completed job is marked. Prints the
table as Markdown and writes ``summary.csv`` and ``summary.md`` into the multirun directory;
``--plot`` also draws the objective per job as ``summary.png``.

A sweep over cross-validation folds (``data.fold``) or seeds (``seed``) gets a second table, one
row per configuration (the other swept settings): the number of completed jobs and the mean and
standard deviation of the objective and of each test metric over them, the best configuration by
mean objective marked; printed after the first and written as ``summary_configs.csv`` and
``summary_configs.md``. Beside them, the objective's difference to the sweep's first
configuration, paired by fold and seed: folds differ far more from each other than good settings
do, so comparing each fold with itself is what separates a real change from a lucky split.

An Optuna search's sweep also gets its study's lines (the best trial of every worker on it, how
much each setting mattered); ``python -m rnnlab.summary STORAGE`` (a journal file or a database
URL, ``--study NAME``) tabulates a study itself, one row per trial (``rnnlab.search``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlab import plotting
from rnnlab.run.directory import STATUS_FILE
from rnnlab.search import study_report
from rnnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _job(directory: Path) -> dict[str, Any]:
    hydra_dir = directory / ".hydra"
    # Hydra writes overrides.yaml as a list and config.yaml as a mapping
    overrides: ListConfig | list[str] = (
        cast(ListConfig, OmegaConf.load(hydra_dir / "overrides.yaml")) if hydra_dir.is_dir() else []
    )
    config: DictConfig | dict[str, Any] = (
        cast(DictConfig, OmegaConf.load(hydra_dir / "config.yaml")) if hydra_dir.is_dir() else {}
    )
    metrics_file, status_file = directory / "metrics.json", directory / STATUS_FILE
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    status = json.loads(status_file.read_text()) if status_file.is_file() else {}
    state = status.get("status") or ("completed" if metrics else "incomplete")
    if status.get("error"):
        state += f": {status['error']}"
    return {
        "job": directory.name,
        "overrides": dict(str(o).split("=", 1) for o in overrides if "=" in str(o)),
        "monitor": config.get("monitor", "val/loss"),
        "mode": config.get("monitor_mode", "min"),
        "status": state,
        "metrics": metrics,
    }


def summarise(multirun_dir: str | Path) -> pd.DataFrame:
    """The summary table of a multirun directory (its numbered job folders)."""
    root = Path(multirun_dir)
    jobs = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not jobs:
        raise SystemExit(f"error: {root} holds no job folders (0, 1, ...); pass a multirun dir")
    rows = [_job(p) for p in jobs]
    keys = sorted({k for r in rows for k in r["overrides"]})
    varying = [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]
    monitor, mode = rows[0]["monitor"], rows[0]["mode"]
    objective = f"{monitor}_best"
    tests = sorted({k for r in rows for k in r["metrics"] if k.startswith("test/")})
    table = pd.DataFrame(
        [
            {
                "job": int(r["job"]),
                **{k: r["overrides"].get(k, "") for k in varying},
                "status": r["status"],
                objective: r["metrics"].get(objective, math.nan),
                **{k: r["metrics"].get(k, math.nan) for k in tests},
            }
            for r in rows
        ]
    )
    done = table[table["status"] == "completed"][objective].dropna()
    table.insert(1, "best", "")
    if len(done):
        best = done.idxmin() if mode == "min" else done.idxmax()
        table.loc[best, "best"] = "*"
    # for whoever draws the table (sweep_figure): which columns mean what
    table.attrs.update(objective=objective, mode=mode, varying=varying, name=root.name)
    return table


# Settings that repeat a configuration rather than define one: its cross-validation fold and seed.
REPEATS = ("data.fold", "seed")


def configurations(table: pd.DataFrame) -> pd.DataFrame | None:
    """One row per configuration of a ``summarise`` table whose sweep varies a fold or seed
    (None when it varies neither): ``jobs`` completed jobs, ``not_completed`` others, each
    metric's ``_mean`` and ``_sd`` (sample standard deviation) over the completed jobs, and
    ``<objective>_vs_first`` and ``_se``: the mean over the (fold, seed) pairs both completed of
    the objective minus the first configuration's, and the standard error of that mean."""
    objective, mode, varying = (table.attrs[k] for k in ("objective", "mode", "varying"))
    if not set(REPEATS) & set(varying):
        return None
    settings = [k for k in varying if k not in REPEATS]
    repeats = [k for k in REPEATS if k in varying]
    metrics = [objective, *(c for c in table.columns if str(c).startswith("test/"))]
    rows = []
    first: pd.Series | None = None
    # sort=False: configurations in the order the sweep first ran them
    groups = table.groupby(settings, sort=False) if settings else [((), table)]
    for key, group in groups:
        done = group[group["status"] == "completed"]
        values = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(settings, values, strict=True))
        row.update(jobs=len(done), not_completed=len(group) - len(done))
        for metric in metrics:
            column = done[metric].astype(float)
            row[f"{metric}_mean"] = column.mean() if len(column) else math.nan
            row[f"{metric}_sd"] = column.std(ddof=1) if len(column) > 1 else math.nan
        paired = done.set_index(repeats)[objective].astype(float).dropna()
        first = paired if first is None else first
        row[f"{objective}_vs_first"], row[f"{objective}_vs_first_se"] = _paired(paired, first)
        rows.append(row)
    configs = pd.DataFrame(rows)
    means = configs[f"{objective}_mean"].dropna()
    configs.insert(len(settings), "best", "")
    if len(means):
        best = means.idxmin() if mode == "min" else means.idxmax()
        configs.loc[best, "best"] = "*"
    configs.attrs.update(objective=objective, mode=mode, settings=settings, repeats=repeats)
    return configs


def _paired(values: pd.Series, first: pd.Series) -> tuple[float, float]:
    """Mean and standard error of ``values - first`` over the (fold, seed) keys both hold; NaN
    where the keys repeat within a configuration (no pairing) or too few are shared."""
    if not (values.index.is_unique and first.index.is_unique):
        return math.nan, math.nan
    differences = (values - first).dropna()
    if not len(differences):
        return math.nan, math.nan
    se = differences.std(ddof=1) / math.sqrt(len(differences)) if len(differences) > 1 else math.nan
    return float(differences.mean()), float(se)


def sweep_figure(table: pd.DataFrame, unit: str | None = None) -> Figure:
    """The objective of every job of a ``summarise`` table as a bar, labelled by the settings
    that vary; the best job in the highlight colour, failed jobs named without a bar. ``unit``
    is the objective's unit (e.g. 'cross-entropy, nats'), where the caller knows it."""
    from matplotlib.figure import Figure

    objective, mode, varying = (table.attrs[k] for k in ("objective", "mode", "varying"))
    labels = [
        ", ".join(f"{k}={row[k]}" for k in varying) or f"job {row['job']}"
        for _, row in table.iterrows()
    ]
    values = table[objective].astype(float)
    colors = [
        plotting.role_color("best" if row["best"] == "*" else "other")
        for _, row in table.iterrows()
    ]
    with plotting.styled():
        fig = Figure(figsize=(7.5, 1.2 + 0.45 * len(table)), layout="constrained")
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        positions = range(len(table))
        ax.barh(positions, values.fillna(0.0), color=colors, height=0.6)
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()  # job order, top down
        for position, value, status in zip(positions, values, table["status"], strict=True):
            text = f" {value:.4f}" if status == "completed" else f" {status}"
            ax.text(0 if math.isnan(value) else value, position, text, va="center", fontsize=8)
        better = "lower" if mode == "min" else "higher"
        ax.set_xlabel(plotting.with_unit(f"{objective} ({better} is better)", unit))
        ax.margins(x=0.2)  # room for the value written after each bar
        ax.set_title(plotting.title("Sweep objective per configuration", table.attrs["name"]))
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "multirun_dir",
        help="a sweep (logs/train/multiruns/<date_time>), or an Optuna study's storage: a "
        "journal file or a database URL (sqlite:///optuna.db, postgresql://...)",
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also draw the objective per job as summary.png (a study: its history)",
    )
    parser.add_argument("--study", help="the study's name in the storage (default: its only one)")
    parser.add_argument(
        "--output", type=Path, default=Path("."), help="where a study's tables go (default: .)"
    )
    args = parser.parse_args(argv)
    if study_report.is_storage(args.multirun_dir) and not Path(args.multirun_dir).is_dir():
        _summarise_study(args.multirun_dir, args.study, args.output, args.plot)
        return
    args.multirun_dir = Path(args.multirun_dir)
    if not args.multirun_dir.is_dir():
        raise SystemExit(f"error: {args.multirun_dir} is not a directory")
    table = summarise(args.multirun_dir)
    markdown = table.to_markdown(index=False, floatfmt=".4f")
    (args.multirun_dir / "summary.md").write_text(markdown + "\n")
    table.to_csv(args.multirun_dir / "summary.csv", index=False)
    if args.plot:
        sweep_figure(table).savefig(args.multirun_dir / "summary.png")
    print(markdown, file=sys.stdout)
    configs = configurations(table)
    if configs is not None:
        markdown = configs.to_markdown(index=False, floatfmt=".4f")
        (args.multirun_dir / "summary_configs.md").write_text(markdown + "\n")
        configs.to_csv(args.multirun_dir / "summary_configs.csv", index=False)
        over = " and ".join(configs.attrs["repeats"])
        print(f"\nPer configuration, mean and sd over {over}:\n", file=sys.stdout)
        print(markdown, file=sys.stdout)
    searched = study_report.sweep_study(args.multirun_dir)
    if searched is not None:  # an Optuna search: its study, with other workers' trials too
        _study_lines(
            *searched, args.multirun_dir / "optimization_history.png" if args.plot else None
        )


def _study_lines(storage: str, name: str, figure: Path | None) -> None:
    try:
        study = study_report.load_study(storage, name)
    except ConfigError as exc:  # moved or unreachable since: the sweep's table still stands
        print(f"\n(the search's study is not readable: {exc})", file=sys.stdout)
        return
    print("\n" + "\n".join(study_report.study_lines(study)), file=sys.stdout)
    if figure is not None:
        study_report.history_figure(study).savefig(figure)


def _summarise_study(storage: str, name: str | None, output: Path, plot: bool) -> None:
    """``rnnlab.summary STORAGE``: the study's trials as a table (also ``study_<name>.md`` and
    ``.csv`` in ``output``), its best trial and importances; its history with ``--plot``."""
    try:
        study = study_report.load_study(storage, name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    table = study_report.trials_table(study)
    markdown = table.to_markdown(index=False, floatfmt=".4f")
    stem = "study_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in study.study_name)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.md").write_text(markdown + "\n")
    table.to_csv(output / f"{stem}.csv", index=False)
    print(markdown, file=sys.stdout)
    print("\n" + "\n".join(study_report.study_lines(study)), file=sys.stdout)
    if plot:
        study_report.history_figure(study).savefig(output / f"{stem}.png")


if __name__ == "__main__":
    main()

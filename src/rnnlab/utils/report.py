"""The lines a command logs about its run: what it is about to do, and where its outputs went."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def shown(path: str | Path) -> str:
    """``path`` as the user can paste it: relative to the working directory when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_directory_line(run_dir: str | Path) -> str:
    """'run directory: logs/train/runs/<date_time> (checkpoints/, metrics.json, train.log)':
    what the run left there, Hydra's hidden config copy aside."""
    run_dir = Path(run_dir)
    entries = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in (run_dir.iterdir() if run_dir.is_dir() else ())
        if not p.name.startswith(".")
    )
    listing = f" ({', '.join(entries)})" if entries else ""
    return f"run directory: {shown(run_dir)}{listing}"


def sweep_directory_line(sweep_dir: str | Path) -> str:
    """Where a multirun's jobs went, and the command that tabulates them."""
    where = shown(sweep_dir)
    return f"sweep directory: {where}; summarise it with: python -m rnnlab.summary {where}"


def metrics_table(title: str, metrics: Mapping[str, float]) -> str:
    """``title`` and one ``name  value`` row per metric, sorted by name: a plain-text table
    for log files (what Lightning draws with box characters on the console)."""
    width = max((len(name) for name in metrics), default=0)
    rows = [f"  {name:<{width}}  {value:.6g}" for name, value in sorted(metrics.items())]
    return "\n".join([title, *rows])


def command_line_overrides() -> list[str]:
    """The overrides this Hydra job was given (in a sweep: with this job's values); empty
    outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]

"""Running a Hydra task so that user mistakes end in one line on stderr, not a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

from omegaconf import DictConfig

from rnnlab.utils.errors import RunInterrupted, find_user_error
from rnnlab.utils.files import RUN_OUTPUTS, write_status
from rnnlab.utils.noise import quiet_known_noise

T = TypeVar("T")


def _remove_fresh_run_dir() -> None:
    """After a failed start, delete what Hydra wrote for this job (its config copy and log) when
    the run wrote no outputs, and the run directory if that leaves it empty. Nothing else is
    touched: the directory may hold the user's own files."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    subdir = hydra_cfg.output_subdir
    ours = {f"{hydra_cfg.job.name}.log", *([subdir] if subdir else [])}
    if not run_dir.is_dir() or any(p.name in RUN_OUTPUTS[1:] for p in run_dir.iterdir()):
        return
    for name in ours:
        entry = run_dir / name
        if entry.is_dir():
            for saved in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                (entry / saved).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                entry.rmdir()
        else:
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only when empty
        run_dir.rmdir()


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Call ``task(cfg)``; a UserError anywhere in the cause chain exits with status 2 and its
    message. ``HYDRA_FULL_ERROR=1`` shows the full traceback instead. A run stopped by a signal
    records ``status.json`` as interrupted and exits with 128 + the signal's number."""
    quiet_known_noise()
    try:
        return task(cfg)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        stopped = as_interrupted(exc)
        write_status(cfg.paths.output_dir, "interrupted", str(stopped))
        report_interrupted(stopped)
    except Exception as exc:
        error = find_user_error(exc)
        if error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _remove_fresh_run_dir()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def as_interrupted(exc: BaseException) -> RunInterrupted:
    if isinstance(exc, RunInterrupted):
        return exc
    return RunInterrupted("interrupted (SIGINT) before training started", signal.SIGINT)


def report_interrupted(exc: RunInterrupted) -> NoReturn:
    print(f"interrupted: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)


@contextlib.contextmanager
def exit_on_interrupt() -> Iterator[None]:
    """Around a command's Hydra entry point: a sweep stopped by a signal (already recorded in
    its job's status.json) ends in one line and the signal's exit status."""
    try:
        yield
    except (RunInterrupted, KeyboardInterrupt) as exc:
        report_interrupted(as_interrupted(exc))

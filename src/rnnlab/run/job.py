"""How one job ends: a user's mistake in one line with exit status 2 (and the run directory left
as it was), a sweep's failed job recorded in its ``status.json`` while the sweep goes on, a run
stopped by a signal saying how to resume it."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnlab.run.directory import mark_run_dir, remove_fresh_run_dir, write_status
from rnnlab.search import TrialPruned
from rnnlab.utils.errors import RunInterrupted, find_user_error, first_line, root_cause
from rnnlab.utils.noise import quiet_known_noise
from rnnlab.utils.report import command_line_overrides, shown, sweep_directory_line
from rnnlab.utils.threads import apply_threads

T = TypeVar("T")
log = logging.getLogger(__name__)


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Call ``task(cfg)`` with ``cfg.threads`` torch threads (``utils.threads``); a UserError
    anywhere in the cause chain exits with status 2 and its message. ``HYDRA_FULL_ERROR=1``
    shows the full traceback instead. A run stopped by a signal records ``status.json`` as
    interrupted and exits with 128 + the signal's number."""
    quiet_known_noise()
    try:
        apply_threads(cfg.get("threads"))
        return task(cfg)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        stopped = as_interrupted(exc)
        write_status(cfg.paths.output_dir, "interrupted", str(stopped))
        report_interrupted(stopped)
    except Exception as exc:
        user_error = find_user_error(exc)
        line = str(user_error) if user_error else resource_failure(exc)
        if line is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        remove_fresh_run_dir()
        if user_error is None and Path(cfg.paths.output_dir).is_dir():  # it had written outputs
            write_status(cfg.paths.output_dir, "failed", line)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


def resource_failure(exc: BaseException) -> str | None:
    """One line for a failure of the machine rather than of rnnlab: the disk or file system
    (``find_io_error``) or memory (host or GPU); None for anything else."""
    failed_io = find_io_error(exc)
    if failed_io is not None:
        return io_error_line(failed_io)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError) or type(current).__name__ == "OutOfMemoryError":
            where = "GPU memory" if type(current).__name__ == "OutOfMemoryError" else "memory"
            return (
                f"out of {where}: the data or the model does not fit; lower data.batch_size or "
                "model.encoder.hidden_size, or use a smaller data set"
            )
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# Failures of the disk or the file system, not of rnnlab: a full disk, a read-only or
# forbidden folder, a name longer than the file system allows, a failing device.
IO_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.EIO,
    }
)


def find_io_error(exc: BaseException) -> OSError | None:
    """The file-system failure behind ``exc`` (through wrappers), if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in IO_ERRNOS:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def io_error_line(exc: OSError) -> str:
    """'cannot write checkpoints/last.ckpt: No space left on device; free space or ...'."""
    where = f" {shown(exc.filename)}" if exc.filename else ""
    if len(where) > 160:
        where = f"{where[:80]}...{where[-60:]}"
    return (
        f"cannot write{where}: {exc.strerror or exc}; free space, or set hydra.run.dir to a "
        "writable folder with a shorter path"
    )


def resume_command(last: Path) -> str:
    """The command that continues a run from its ``last`` checkpoint: the interrupted job's own
    overrides (in a sweep, with this job's values) plus ``ckpt_path``, into a new directory."""
    from hydra.core.hydra_config import HydraConfig

    overrides = [o for o in command_line_overrides() if _key(o) not in _RESUME_KEYS]
    overrides.append(f"ckpt_path={last}")
    if HydraConfig.initialized():
        typed = [o for o in HydraConfig.get().overrides.hydra if _key(o) == "hydra.run.dir"]
        if typed:  # the interrupted run's directory holds files: the resumed run needs another
            overrides.append(f"hydra.run.dir={Path(str(typed[-1]).split('=', 1)[1])}-resumed")
    return shlex.join(["python", "-m", "rnnlab.train", *overrides])


# Settings of the interrupted command that the resuming command replaces.
_RESUME_KEYS = ("ckpt_path", "resume", "overwrite", "hparams_search")


def _key(override: str) -> str:
    return str(override).split("=", 1)[0].lstrip("+~")


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_sweep_job(
    task: Callable[[DictConfig], dict[str, float]],
    cfg: DictConfig,
    objective: Callable[[DictConfig, dict[str, float]], float | None],
) -> float | None:
    """Run one job of a sweep; return its objective, or None when it failed (a bad combination,
    an error, running out of memory, a NaN objective) or was pruned. Every sweeper moves on;
    the Optuna sweeper records a None as a failed (or pruned) trial."""
    quiet_known_noise()
    mark_run_dir(cfg.paths.output_dir)
    try:
        apply_threads(cfg.get("threads"))
        metrics = task(cfg)
    except (RunInterrupted, KeyboardInterrupt) as exc:  # preempted: stop the sweep here
        stopped = as_interrupted(exc)
        # in the job's log too: a cluster job's console is a file nobody reads first
        log.warning("interrupted: %s", stopped)
        write_status(cfg.paths.output_dir, "interrupted", str(stopped))
        raise
    except TrialPruned as exc:  # the search's pruner stopped it: not a failure
        write_status(cfg.paths.output_dir, "pruned", str(exc))
        return None
    except Exception as exc:  # one failed job must not end the sweep
        user_error = find_user_error(exc)
        root = root_cause(exc)
        # the whole message on one line: wrappers put the real error on their second line
        detail = " ".join(str(root).split())[:300]
        reason = first_line(user_error) if user_error else f"{type(root).__name__}: {detail}"
        reason = (None if user_error else resource_failure(exc)) or reason
        log.error("job failed: %s", reason)
        write_status(cfg.paths.output_dir, "failed", reason)
        _release_accelerator_memory()
        return None
    value = objective(cfg, metrics)
    if value is None:
        reason = f"{cfg.monitor}_best is missing or NaN (the loss may have diverged)"
        log.error("job failed: %s", reason)
        write_status(cfg.paths.output_dir, "failed", reason)
        return None
    write_status(cfg.paths.output_dir, "completed")
    return value


def _release_accelerator_memory() -> None:
    """After an out-of-memory job, give cached GPU memory back before the next job."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def as_interrupted(exc: BaseException) -> RunInterrupted:
    if isinstance(exc, RunInterrupted):
        return exc
    return RunInterrupted("interrupted (SIGINT) before training started", signal.SIGINT)


def report_interrupted(exc: RunInterrupted) -> NoReturn:
    print(f"interrupted: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)


@contextlib.contextmanager
def exit_on_interrupt() -> Iterator[None]:
    """Around a command: a sweep stopped by a signal (already recorded in its job's
    status.json) ends in one line and the signal's exit status."""
    try:
        yield
    except (RunInterrupted, KeyboardInterrupt) as exc:
        report_interrupted(as_interrupted(exc))


class SweepDirectoryLine(Callback):
    """A Hydra callback (``hydra.callbacks`` in conf/hydra/default.yaml): when a multirun ends,
    print where its jobs went and how to tabulate them. Each job logs its own run directory;
    the sweep's (``logs/optuna/...`` for an Optuna search, whose ``task_name`` is ``optuna``)
    is known for certain only here, after the last job."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # printed, not logged: logging still writes to the last job's log file
        print(sweep_directory_line(str(config.hydra.sweep.dir)), flush=True)

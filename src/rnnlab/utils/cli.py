"""Running a Hydra task so that user mistakes end in one line on stderr, not a traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig

from rnnlab.utils.errors import find_user_error
from rnnlab.utils.files import RUN_OUTPUTS

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


class _DropTips(logging.Filter):
    """Lightning advertises add-on services at every start; batch logs don't need that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning_tips() -> None:
    for name in ("lightning.fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Call ``task(cfg)``; a UserError anywhere in the cause chain exits with status 2 and its
    message. ``HYDRA_FULL_ERROR=1`` shows the full traceback instead."""
    quiet_lightning_tips()
    try:
        return task(cfg)
    except Exception as exc:
        error = find_user_error(exc)
        if error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _remove_fresh_run_dir()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

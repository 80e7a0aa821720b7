"""Running a Hydra task so that user mistakes end in one line on stderr, not a traceback."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig

from rnnlab.utils.errors import find_user_error

T = TypeVar("T")


def _remove_fresh_run_dir() -> None:
    """Delete the run directory Hydra made for this job if it holds nothing but Hydra's own
    files, so a failed start leaves no half-filled run behind."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    if all(p.name == ".hydra" or p.suffix == ".log" for p in entries):
        shutil.rmtree(run_dir, ignore_errors=True)


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

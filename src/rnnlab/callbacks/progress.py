"""How training shows its progress: a live bar on a terminal, one line per epoch elsewhere
(a file, a pipe, a cluster job's log), where a bar's carriage-return redraws pile up to
hundreds of kilobytes. Both show the monitored metric (``monitor`` in conf/train.yaml), whether
or not the model logged it for the progress bar, and every epoch's line also goes to the run's
log file."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from rnnlab.utils.logs import FILE_ONLY

log = logging.getLogger(__name__)


def stdout_is_terminal() -> bool:
    """Whether stdout redraws a line in place: a terminal, or a Jupyter notebook's output
    (whose stream says it is no TTY)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def shows_live_bar(trainer_cfg: Any) -> bool:
    """Whether a run gets a live progress bar: when asked for (``trainer.enable_progress_bar``)
    and stdout is a terminal that redraws it in place."""
    return bool(trainer_cfg.get("enable_progress_bar", True)) and stdout_is_terminal()


def watched_metrics(trainer: L.Trainer, monitor: str | None) -> dict[str, Any]:
    """The metrics the model logged for the progress bar, the monitored one first even when
    the model logged it without ``prog_bar`` (the language model's ``val/bpc``)."""
    shown = dict(trainer.progress_bar_metrics)
    if monitor and monitor in trainer.callback_metrics:
        shown.pop(monitor, None)
        shown = {monitor: float(trainer.callback_metrics[monitor]), **shown}
    return shown


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, redrawn when ``min_interval`` seconds have passed since its last
    redraw (and at the end of every bar) instead of after every batch. A redraw formats the
    logged metrics and writes to the terminal; with small models that took a few percent of
    training time (scripts/bench_loop.py), and batch-job logs fill up less."""

    def __init__(self, min_interval: float = 0.25, monitor: str | None = None) -> None:
        super().__init__(refresh_rate=1)
        self.min_interval = min_interval
        self.monitor = monitor
        self._last_redraw = -float("inf")

    def _should_update(self, current: int, total: int | float) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_redraw >= self.min_interval:
            self._last_redraw = now
            return True
        return False

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        standard = super().get_metrics(trainer, pl_module)
        return {**watched_metrics(trainer, self.monitor), **standard}


def epoch_line(
    epoch: int, max_epochs: int | None, metrics: dict[str, Any], seconds: float, validated: bool
) -> str:
    """'epoch 3/60  train/loss 0.41  val/loss 0.38  val/acc 0.95  12.1 s' (``epoch``
    0-based, shown 1-based): training metrics first, then the others in ``metrics``' order.
    Per-step values are left out, ``_epoch`` suffixes dropped, and ``val/`` values only shown
    for an epoch that validated (else they are an older epoch's)."""
    of = f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else ""
    parts = [f"epoch {epoch + 1}{of}"]
    ordered = sorted(metrics.items(), key=lambda item: not item[0].startswith("train/"))
    for name, value in ordered:
        if name.endswith("_step") or (name.startswith("val/") and not validated):
            continue
        parts.append(f"{name.removesuffix('_epoch')} {float(value):.4g}")
    parts.append(f"{seconds:.1f} s")
    return "  ".join(parts)


class EpochLines(L.Callback):
    """Logs one line per training epoch (``epoch_line``), on global rank 0: to the run's log
    file always, and to the console when no live bar is drawing there.

    The line is written when the epoch is complete: its training loss is logged by the model's
    ``on_train_epoch_end``, which Lightning calls after this callback's, so the line waits
    for the next epoch's start (or the end of training, or an exception)."""

    def __init__(self, monitor: str | None = None) -> None:
        self.monitor = monitor
        self._started = 0.0
        self._validated = False
        self._pending: tuple[int, float, bool] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)
        self._started = time.perf_counter()
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._started
        self._pending = (trainer.current_epoch, seconds, self._validated)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        if self._pending is None:
            return
        epoch, seconds, validated = self._pending
        self._pending = None
        if not trainer.is_global_zero:
            return
        metrics = watched_metrics(trainer, self.monitor)
        line = epoch_line(epoch, trainer.max_epochs, metrics, seconds, validated)
        # a live bar redraws the console's last line: the line would break it
        log.info(line, extra=None if trainer.progress_bar_callback is None else FILE_ONLY)

"""A progress bar that redraws at most a few times a second, whatever the step rate."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, redrawn when ``min_interval`` seconds have passed since its last
    redraw (and at the end of every bar) instead of after every batch. A redraw formats the
    logged metrics and writes to the terminal; with small models that took a few percent of
    training time (scripts/bench_loop.py), and batch-job logs fill up less."""

    def __init__(self, min_interval: float = 0.25) -> None:
        super().__init__(refresh_rate=1)
        self.min_interval = min_interval
        self._last_redraw = -float("inf")

    def _should_update(self, current: int, total: int | float) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_redraw >= self.min_interval:
            self._last_redraw = now
            return True
        return False

"""Fault injection: a process that signals itself at an exact training step.

Crash and preemption tests need the crash to land at a known point, not wherever a timer in
another process happens to fall; users can rehearse their cluster's preemption path the same way
(``+callbacks.fault._target_=rnnlab.callbacks.faults.SignalAtStep +callbacks.fault.step=30
+callbacks.fault.signal=SIGTERM``).
"""

from __future__ import annotations

import os
import signal as signals
import sys
from typing import Any

import lightning as L

from rnnlab.utils.errors import ConfigError


class SignalAtStep(L.Callback):
    """Sends ``signal`` (a name such as SIGKILL, SIGTERM or SIGINT) to this process just before
    training step ``step`` (the trainer's ``global_step``) runs, so exactly ``step`` optimiser
    steps have been taken. Only global rank 0 signals, as a scheduler signals the launcher."""

    def __init__(self, step: int, signal: str = "SIGKILL") -> None:
        if step < 0:
            raise ConfigError(f"SignalAtStep step must be >= 0, got {step}")
        try:
            self.signal = signals.Signals[signal]
        except KeyError as exc:
            raise ConfigError(
                f"unknown signal {signal!r}; use e.g. SIGKILL, SIGTERM, SIGINT"
            ) from exc
        self.step = step
        self.sent = False

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not self.sent and trainer.global_step == self.step and trainer.is_global_zero:
            self.sent = True
            # a line to wait for: a test measures from here how promptly the run stops
            print(f"fault: sending {self.signal.name} before step {self.step}", file=sys.stderr)
            sys.stderr.flush()
            os.kill(os.getpid(), self.signal)

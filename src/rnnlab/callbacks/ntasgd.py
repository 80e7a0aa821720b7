"""Non-monotonically triggered averaging, the "NT" of NT-ASGD (Merity, Keskar & Socher 2017),
for ``model/optimizer=ntasgd``: plain SGD until the monitored metric stops improving, then the
running equal average of the weights after every step from there on.

The trigger is AWD-LSTM's: at a validation, once more than ``nonmono`` earlier validations were
seen, averaging starts if this one is worse than the best of all but the last ``nonmono`` of
them. It starts once and never stops.

Before the trigger nothing is averaged: validation, checkpoints and the test see the weights as
trained. From the first averaged step on, as with ``callbacks=ema`` (Lightning's
``WeightAveraging`` underneath), validation swaps the average in, every checkpoint holds the
average as its ``state_dict`` (so ``best.ckpt``, the final test, eval, predict and ensembles use
it) and the raw weights as ``current_model_state``, and a resumed run restores both, with the
validation history and the trigger, exactly.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from rnnlab.utils.errors import ConfigError

log = logging.getLogger(__name__)


class NonMonotoneAveraging(WeightAveraging):
    """Average the weights (equally, every step) once ``monitor`` has not improved, in
    ``mode`` ('min' or 'max'), on ``nonmono`` validations in a row over the best before them."""

    def __init__(self, monitor: str, mode: str = "min", nonmono: int = 5) -> None:
        if isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1:
            raise ConfigError(
                f"callbacks.weight_averaging.nonmono must be a whole number >= 1, got {nonmono!r}"
            )
        if mode not in ("min", "max"):
            raise ConfigError(f"callbacks.weight_averaging.mode must be min or max, got {mode!r}")
        super().__init__()
        self.monitor, self.mode, self.nonmono = monitor, mode, nonmono
        self.history: list[float] = []  # the monitored value at each validation so far
        self.started_at_step: int | None = None  # the optimiser steps done at the trigger

    # --- the trigger -------------------------------------------------------------------------
    def observe(self, value: float, step: int) -> bool:
        """Record a validation's ``value`` after ``step`` optimiser steps; whether averaging
        starts now."""
        history, self.history = self.history, [*self.history, value]
        if self.started_at_step is not None or len(history) <= self.nonmono:
            return False
        earlier = [v for v in history[: -self.nonmono] if not math.isnan(v)]
        if not earlier:
            return False
        best = min(earlier) if self.mode == "min" else max(earlier)
        if value > best if self.mode == "min" else value < best:  # NaN: neither
            self.started_at_step = step
        return self.started_at_step is not None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ConfigError(
                f"model/optimizer=ntasgd watches {self.monitor}, which this run does not log: "
                "set monitor to one of its validation metrics"
            )
        if self.observe(float(value), trainer.global_step):
            log.info("NT-ASGD: averaging the weights from step %d on", trainer.global_step)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and self.started_at_step is not None

    # --- only an average that exists replaces the weights ------------------------------------
    def _averaged(self) -> bool:
        average = self._average_model
        return average is not None and int(average.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaged():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaged():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaged():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._averaged():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # resuming a fit with an average: restore it and the raw weights; otherwise the
        # checkpoint's state_dict is the weights to use (raw before the trigger, the average
        # after it, which is what to evaluate)
        if trainer.state.fn == TrainerFn.FITTING and "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    # --- resuming ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "history": list(self.history),
            "started_at_step": self.started_at_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.history = [float(v) for v in state_dict["history"]]
        self.started_at_step = state_dict["started_at_step"]

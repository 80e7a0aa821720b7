"""A run that ``trainer.max_steps`` ends in the middle of an epoch validates where it stops.

Lightning validates at an epoch's end only, so such a run ended without the monitored metric
and its checkpoint, early-stopping and test steps failed. Asking the loop to stop at the last
step makes Lightning validate there (as it does for early stopping); ``trainer.max_steps``
wins over ``trainer.min_epochs``, which would otherwise keep the epoch going past it.
"""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateAtMaxSteps(L.Callback):
    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.fit_loop.min_epochs = 0
            trainer.should_stop = True

"""Weight averaging: an exponential moving average (EMA) of the weights, for ``callbacks=ema``.

Lightning's ``EMAWeightAveraging`` keeps the average in a ``torch.optim.swa_utils.AveragedModel``,
updated after every optimiser step, and swaps it in for validation and at the end of training;
every checkpoint holds the average as its ``state_dict`` (so ``best.ckpt``, the final test, eval,
predict and ensembles all use it), the raw weights as ``current_model_state`` and the number of
updates as ``averaging_state``, all plain tensors, from which a resumed run restores both
exactly.

Lightning's callback also puts the raw weights back whenever the trainer that trained loads a
checkpoint, so ``trainer.test(ckpt_path=best)`` after ``fit`` (what ``rnnlab.train`` does) would
score the raw weights, not the average that was validated and selected. ``EMAWeights`` restores
the raw weights only to resume fitting.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from rnnlab.utils.errors import ConfigError


class EMAWeights(EMAWeightAveraging):
    """After each optimiser step from ``update_starting_at_step`` (0-based; None: the first) the
    average moves to ``decay * average + (1 - decay) * weights``; the first update copies the
    weights. ``decay`` 0 follows the weights exactly; 0.99 averages over about the last
    1 / (1 - decay) = 100 steps."""

    def __init__(self, decay: float = 0.99, update_starting_at_step: int | None = None) -> None:
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay <= 1:
            raise ConfigError(f"callbacks.weight_averaging.decay must lie in [0, 1], got {decay!r}")
        if update_starting_at_step is not None and update_starting_at_step < 0:
            raise ConfigError(
                "callbacks.weight_averaging.update_starting_at_step must be >= 0 or null, got "
                f"{update_starting_at_step}"
            )
        super().__init__(decay=float(decay), update_starting_at_step=update_starting_at_step)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Outside fitting the checkpoint's state_dict, the average, is what to evaluate.
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

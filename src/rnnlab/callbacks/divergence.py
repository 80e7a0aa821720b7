"""Stop at the first non-finite training loss, before it reaches the weights."""

from __future__ import annotations

import lightning as L
import torch

from rnnlab.utils.errors import UserError


class DivergenceError(UserError):
    """Training diverged; the message says where and what to try."""


class DivergenceGuard(L.Callback):
    """Checks every training loss before its backward pass. A NaN/inf loss ends the run with one
    line naming the epoch and step and the settings to change; no optimiser step has used it,
    so every checkpoint on disk (``last.ckpt``, ``best.ckpt``) holds the last good weights."""

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if torch.isfinite(loss).all():
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        clip = trainer.gradient_clip_val
        saved = trainer.checkpoint_callback
        last = getattr(saved, "last_model_path", "") or getattr(saved, "best_model_path", "")
        raise DivergenceError(
            f"training loss is {loss.item()} at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step}; lower model.optimizer.lr (now {lr:g}) or clip gradients "
            f"harder (trainer.gradient_clip_val, now {clip}); last good checkpoint: "
            f"{last or 'none saved yet'}"
        )

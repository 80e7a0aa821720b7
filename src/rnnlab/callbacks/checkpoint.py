"""Best and last checkpoints, with ``last.ckpt`` rewritten after every training epoch.

Lightning 2.6's ``ModelCheckpoint`` writes ``last.ckpt`` only in an epoch that also writes a
monitored (best) checkpoint, so once the monitored metric stops improving ``last.ckpt`` falls
behind: ``resume=auto`` after a preemption would retrain every epoch since the last improvement,
and the interruption line would name a checkpoint older than "the last finished epoch".
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``save_last`` means every finished training epoch.

    The class keeps Lightning's name: a callback's state in a checkpoint is filed under its class
    name, so runs checkpointed with Lightning's class resume under this one, and back.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        saved_this_step = self._last_global_step_saved == trainer.global_step
        if (
            self.save_last
            and not saved_this_step
            and self._should_save_on_train_epoch_end(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

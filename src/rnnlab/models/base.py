"""What every task's LightningModule shares: the optimisers and how losses and metrics are
logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torchmetrics import MetricCollection

from rnnlab.capabilities import name_of
from rnnlab.models.optim import build_optimizers

STAGES = ("train", "val", "test")


class SequenceModule(L.LightningModule):
    """Base LightningModule: ``optimizer`` and ``scheduler`` are Hydra partials completed in
    ``configure_optimizers``; ``monitor`` is the metric a plateau scheduler watches.

    The loss is averaged per stage (weighted by batch size, summed across DDP ranks) and logged
    once per epoch as ``train/loss_epoch``, ``val/loss`` and ``test/loss``; the training step's
    own loss is logged as ``train/loss_step`` only on the steps the logger writes
    (``trainer.log_every_n_steps``). Every ``self.log`` call moves its stored value to the
    device again (Lightning #20388); calling it only when its value is written gives the same
    curves and the same numbers for less (scripts/bench/loop.py). Metric collections are
    logged the same way, once per epoch (``log_epoch_metrics``).
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        monitor: str,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        # per stage: (sum of per-sample losses, sample count) of the epoch so far; plain tensors,
        # not a torchmetrics MeanMetric, whose update costs ~45 us a step (scripts/bench/loop.py)
        self.loss_sums: dict[str, tuple[torch.Tensor, int]] = {}

    def check_data(self, datamodule: Any) -> None:
        """Refuse, when the run is built, settings this data cannot serve (one line)."""

    def display_name(self) -> str:
        """How the run's first log line and figure titles name this model: by its ``encoder``
        submodule ('BiLSTM, 64 units'). A model without one overrides it."""
        return name_of(self.get_submodule("encoder"))

    def training_loss(self, batch: Any) -> torch.Tensor:
        """The loss ``training_step`` takes on ``batch``, logging and updating nothing (the
        gradient-flow diagnostics differentiate it on the side)."""
        raise NotImplementedError

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Add a batch's mean loss to its stage's epoch mean; log a training step's loss when
        the logger will write it (Lightning's own rule: every ``log_every_n_steps`` batches)."""
        total, count = self.loss_sums.get(stage, (torch.zeros((), device=loss.device), 0))
        # float32 sums: a bf16 loss would round the running total
        self.loss_sums[stage] = (total + loss.detach().float() * batch_size, count + batch_size)
        trainer = self._trainer
        if stage != "train" or trainer is None:
            return
        # set on every Trainer at init (default 50) but missing from Lightning's types
        if (self.global_step + 1) % getattr(trainer, "log_every_n_steps", 50) == 0:
            self.log("train/loss_step", loss.detach(), prog_bar=True, batch_size=batch_size)

    def log_epoch_loss(self, stage: str) -> None:
        """Log and reset a stage's epoch mean loss: the sample-weighted mean over every rank's
        batches (a NaN loss shows as NaN)."""
        if stage not in self.loss_sums:
            return
        total, count = self.loss_sums.pop(stage)
        both = torch.stack([total, torch.tensor(float(count), device=total.device)])
        if self._trainer is not None:  # summed across DDP ranks; unchanged on one device
            both = self.trainer.strategy.reduce(both, reduce_op="sum")
        name = "train/loss_epoch" if stage == "train" else f"{stage}/loss"
        self.log(name, both[0] / both[1], prog_bar=True)

    def log_epoch_metrics(self, metrics: MetricCollection, prog_bar: bool) -> None:
        """Log and reset a collection updated every step (``compute`` syncs DDP ranks)."""
        self.log_dict(metrics.compute(), prog_bar=prog_bar)
        metrics.reset()

    def log_stage_metrics(self, stage: str) -> None:
        """Log and reset a stage's own epoch metrics, after its loss (a model's hook; called at
        the end of every train, val and test epoch)."""

    def on_train_epoch_end(self) -> None:
        self.log_epoch_loss("train")
        self.log_stage_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_loss("val")
        self.log_stage_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_loss("test")
        self.log_stage_metrics("test")

    def configure_optimizers(self) -> Any:
        return build_optimizers(
            self.parameters(), self.optimizer_factory, self.scheduler_factory, self.monitor
        )

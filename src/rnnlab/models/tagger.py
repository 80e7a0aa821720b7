"""LightningModule for per-step classification: one class per time step (the copy-memory probe,
sequence labelling)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from rnnlab.batch import Batch
from rnnlab.models.base import SequenceModule, StageMetrics
from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError


class SequenceTagger(SequenceModule):
    """Encoder (``pooling: none``, every step's output) -> linear head per step, trained with
    cross-entropy averaged over the valid steps of the batch.

    ``y`` is (batch, time) class indices. ``baselines`` name per-step log-probabilities the data
    puts in ``Batch.baselines`` (e.g. copy memory's memoryless predictor); each is scored with the
    same loss, logged as ``<stage>/loss_<name>`` beside ``<stage>/loss``. Step accuracy is
    ``<stage>/acc``.
    """

    # settings that size the weights: a checkpoint's are checked against its weights before
    # it is built (rnnlab.checkpoint.weights)
    size_settings: ClassVar[tuple[str, ...]] = ("num_classes",)

    def __init__(
        self,
        encoder: RNNEncoder,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        baselines: list[str] | tuple[str, ...] = (),
        monitor: str = "val/loss",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        if not isinstance(encoder, RNNEncoder):
            raise ConfigError(
                f"a per-step model reads every step's output, which {type(encoder).__name__} "
                "does not give: use model/encoder=rnn"
            )
        if encoder.pooling != "none":
            raise ConfigError(
                f"a per-step model reads every step: set model.encoder.pooling=none "
                f"(it is {encoder.pooling!r})"
            )
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_size, num_classes)
        self.baselines = list(baselines)
        # <stage>/acc (on the progress bar) and <stage>/loss_<baseline>, for val and test
        self.stage_metrics = StageMetrics(
            lambda stage: {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                **{f"loss_{name}": MeanMetric() for name in self.baselines},
            },
            stages=("val", "test"),
            shown=lambda stage, name: name == "acc",
        )

    def check_data(self, datamodule: Any) -> None:
        provided = datamodule.baseline_names()
        for name in self.baselines:
            if name not in provided:
                raise ConfigError(
                    f"model.baselines has {name!r}, which this data does not provide; it "
                    f"provides: {', '.join(provided) or 'none'}"
                )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (batch, time, classes); padding steps hold the head's bias only."""
        return self.head(self.encoder(x, lengths))

    @staticmethod
    def _valid(batch: Batch, device: torch.device) -> torch.Tensor:
        steps = torch.arange(batch.x.shape[1], device=device)
        return steps[None, :] < batch.lengths.to(device)[:, None]

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self(batch.x, batch.lengths)
        valid = self._valid(batch, logits.device)
        loss = F.cross_entropy(logits[valid], batch.targets()[valid])
        return loss, logits, valid

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return self._loss(batch)[0]

    def stage_step(self, batch: Batch, stage: str) -> torch.Tensor:
        loss, logits, valid = self._loss(batch)
        self.log_loss(stage, loss, len(batch))
        if stage != "train":
            target = batch.targets()[valid]
            self.stage_metrics.update(stage, "acc", logits.detach()[valid], target)
            for name in self.baselines:
                scored = F.cross_entropy(batch.baselines[name][valid], target)
                self.stage_metrics.update(stage, f"loss_{name}", scored.expand(len(batch)))
        return loss

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"classes": self(batch.x, batch.lengths).argmax(dim=-1).cpu()}

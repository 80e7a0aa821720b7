"""The first-bit task's LightningModule: rnnlab's ``RNNEncoder`` (built from its own config at
``model.encoder``) and a linear head over its pooled output, trained with cross-entropy.

It reads only ``Batch``'s core fields (``x``, ``lengths``, ``y``) and offers one capability,
``Averageable`` (``rnnlab.capabilities``): an ensemble averages its class probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from rnnlab.batch import Batch
from rnnlab.models.base import SequenceModule, StageMetrics

CLASSES = 2  # first bit 0, first bit 1


def _metrics(stage: str) -> dict[str, MetricCollection]:
    return {"classes": MetricCollection({"acc": MulticlassAccuracy(CLASSES, average="micro")})}


class FirstBitClassifier(SequenceModule):
    """Encoder -> linear head: logits of (0, 1) for each sequence's first bit."""

    averaged_output = "probabilities"  # Averageable: what an ensemble averages

    def __init__(
        self,
        encoder: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.output_size), CLASSES)
        # <stage>/acc, logged by the base at each epoch end; on the bar for val and test
        self.stage_metrics = StageMetrics(_metrics, shown=lambda stage, name: stage != "train")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 2) of padded ``x`` (batch, time, 1) with valid ``lengths``."""
        return self.head(self.encoder(x, lengths))

    def stage_step(self, batch: Batch, stage: str) -> torch.Tensor:
        y = batch.targets()
        logits = self(batch.x, batch.lengths)  # once per batch: an ensemble replays it
        loss = F.cross_entropy(logits, y)
        self.stage_metrics.update(stage, "classes", logits, y)
        self.log_loss(stage, loss, len(y))
        return loss

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self(batch.x, batch.lengths), batch.targets())

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"probabilities": self(batch.x, batch.lengths).softmax(dim=-1).cpu()}

    def forward_output(self, average: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Averaged probabilities as logits (their log: its softmax is the average again), so
        the ensemble's test/loss is the cross-entropy of the average."""
        return average.clamp_min(torch.finfo(average.dtype).tiny).log()

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
from rnnlab.models.base import SequenceModule

CLASSES = 2  # first bit 0, first bit 1


def _metrics(stage: str) -> MetricCollection:
    accuracy = MulticlassAccuracy(CLASSES, average="micro")
    return MetricCollection({"acc": accuracy}, prefix=f"{stage}/")


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
        # one metric object per stage (a shared one would mix their states)
        self.train_metrics, self.val_metrics = _metrics("train"), _metrics("val")
        self.test_metrics = _metrics("test")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 2) of padded ``x`` (batch, time, 1) with valid ``lengths``."""
        return self.head(self.encoder(x, lengths))

    def stage_step(self, batch: Batch, stage: str) -> torch.Tensor:
        assert batch.y is not None
        logits = self(batch.x, batch.lengths)  # once per batch: an ensemble replays it
        loss = F.cross_entropy(logits, batch.y)
        getattr(self, f"{stage}_metrics").update(logits, batch.y)
        self.log_loss(stage, loss, len(batch.y))
        return loss

    def training_loss(self, batch: Batch) -> torch.Tensor:
        assert batch.y is not None
        return F.cross_entropy(self(batch.x, batch.lengths), batch.y)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"probabilities": self(batch.x, batch.lengths).softmax(dim=-1).cpu()}

    def log_stage_metrics(self, stage: str) -> None:
        self.log_epoch_metrics(getattr(self, f"{stage}_metrics"), prog_bar=stage != "train")

    def forward_output(self, average: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Averaged probabilities as logits (their log: its softmax is the average again), so
        the ensemble's test/loss is the cross-entropy of the average."""
        return average.clamp_min(torch.finfo(average.dtype).tiny).log()

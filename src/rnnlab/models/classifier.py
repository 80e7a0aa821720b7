"""LightningModule for sequence classification: loss, metrics, optimiser and scheduler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from rnnlab.batch import Batch
from rnnlab.models.base import SequenceModule, StageMetrics
from rnnlab.models.encoder import SequenceEncoder


def _metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )


class SequenceClassifier(SequenceModule):
    """Encoder -> dropout -> linear head, trained with cross-entropy.

    ``input_noise`` is the std of Gaussian noise added to the (normalised) inputs of training
    batches only: a cheap regulariser for small data sets. ``optimizer``, ``scheduler`` and
    ``monitor``: see SequenceModule.

    Capabilities (``rnnlab.capabilities``): ``Averageable`` (an ensemble averages class
    probabilities) and ``ConfusionCounts`` (the test confusion matrix figure).
    """

    averaged_output = "probabilities"
    # settings that size the weights: a checkpoint's are checked against its weights before
    # the model is built (rnnlab.checkpoint.weights)
    size_settings: ClassVar[tuple[str, ...]] = ("num_classes",)

    def __init__(
        self,
        encoder: SequenceEncoder,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        head_dropout: float = 0.0,
        input_noise: float = 0.0,
        monitor: str = "val/acc",
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(encoder.output_size, num_classes)
        )
        self.input_noise = input_noise
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        # <stage>/acc, precision, recall, f1; on the progress bar for val and test
        self.stage_metrics = StageMetrics(
            lambda stage: {"classes": _metrics(num_classes)},
            shown=lambda stage, name: stage != "train",
        )
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, classes) for padded ``x`` and its valid ``lengths``."""
        return self.head(self.encoder(x, lengths))

    def _loss(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch.x, batch.targets()
        if stage == "train" and self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x)
        logits = self(x, batch.lengths)
        return F.cross_entropy(logits, y), logits

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return self._loss(batch, "train")[0]

    def stage_step(self, batch: Batch, stage: str) -> torch.Tensor:
        y = batch.targets()
        loss, logits = self._loss(batch, stage)
        self.stage_metrics.update(stage, "classes", logits, y)
        self.log_loss(stage, loss, len(y))
        if stage == "test":
            self.test_confusion.update(logits, y)  # test_confusion_matrix(), for the figure
        return loss

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"probabilities": self(batch.x, batch.lengths).softmax(dim=-1).cpu()}

    def forward_output(self, average: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Averaged probabilities as logits: their log, whose softmax is the average again, so
        the loss is the cross-entropy of the average."""
        # a probability that underflowed to 0 would make the loss infinite; the smallest float
        # caps its term instead
        return average.clamp_min(torch.finfo(average.dtype).tiny).log()

    def test_confusion_matrix(self) -> torch.Tensor | None:
        """The test epoch's counts, true class by row (syncs DDP ranks: call it on every one);
        None before any test batch."""
        return self.test_confusion.compute() if self.test_confusion.update_called else None

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

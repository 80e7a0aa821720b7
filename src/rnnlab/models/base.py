"""What every task's LightningModule shares: the optimisers and how losses and metrics are
logged (``log_loss`` for the loss, ``StageMetrics`` for everything else)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from rnnlab.capabilities import name_of
from rnnlab.models.optim import build_optimizers

STAGES = ("train", "val", "test")


class StageMetrics(nn.Module):
    """A model's metrics, one set of metric objects per stage (one object shared by two stages
    would mix their states), logged once per epoch by ``SequenceModule``.

    ``make(stage)`` gives a stage's metrics by name. A ``Metric`` whose ``compute`` returns a
    tensor is logged as ``<stage>/<name>``; a ``MetricCollection``, or a ``Metric`` whose
    ``compute`` returns a dict, as ``<stage>/<key>`` for each of its keys (the name is then only
    its handle). ``shown(stage, name)`` puts a metric on the progress bar (and the epoch line);
    it and ``make`` are called here only, so the module pickles.
    """

    def __init__(
        self,
        make: Callable[[str], Mapping[str, Metric | MetricCollection]],
        stages: Iterable[str] = STAGES,
        shown: Callable[[str, str], bool] = lambda stage, name: False,
    ) -> None:
        super().__init__()
        # keyed '<stage>/<name>': a key without '/' could clash with a Module attribute ('train')
        self.by_key = nn.ModuleDict()
        self.names: dict[str, list[str]] = {}
        for stage in stages:
            made = dict(make(stage))
            self.names[stage] = list(made)
            self.by_key.update({f"{stage}/{name}": metric for name, metric in made.items()})
        self.shown = {
            (stage, name)
            for stage, names in self.names.items()
            for name in names
            if shown(stage, name)
        }

    def metric(self, stage: str, name: str) -> Metric | MetricCollection:
        return cast("Metric | MetricCollection", self.by_key[f"{stage}/{name}"])

    def metrics(self, stage: str) -> dict[str, Metric | MetricCollection]:
        """A stage's metrics by name (none for a stage this model does not score)."""
        return {name: self.metric(stage, name) for name in self.names.get(stage, [])}

    def update(self, stage: str, name: str, *args: Any, **kwargs: Any) -> None:
        """Add a batch to metric ``name`` of ``stage``."""
        self.metric(stage, name).update(*args, **kwargs)

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Keep every stage's metric states in ``dtype`` (e.g. float64 sums)."""
        for metric in self.by_key.values():
            cast("Metric | MetricCollection", metric).set_dtype(dtype)

    def compute(self, stage: str) -> dict[str, dict[str, torch.Tensor]]:
        """A stage's epoch values by metric name, each as ``{'<stage>/<key>': value}``, and
        every metric of the stage reset. ``compute`` syncs DDP ranks: call it on every one,
        whether or not its batches updated the metric (a model with nothing to score in a stage
        leaves that stage out of ``stages``)."""
        values = {}
        for name, metric in self.metrics(stage).items():
            result = metric.compute()
            if isinstance(result, torch.Tensor):
                result = {name: result}
            values[name] = {f"{stage}/{key}": value for key, value in result.items()}
            metric.reset()
        return values


class SequenceModule(L.LightningModule):
    """Base LightningModule: ``optimizer`` and ``scheduler`` are Hydra partials completed in
    ``configure_optimizers``; ``monitor`` is the metric a plateau scheduler watches.

    The loss is averaged per stage (weighted by batch size, summed across DDP ranks) and logged
    once per epoch as ``train/loss_epoch``, ``val/loss`` and ``test/loss``; the training step's
    own loss is logged as ``train/loss_step`` only on the steps the logger writes
    (``trainer.log_every_n_steps``). Every ``self.log`` call moves its stored value to the
    device again (Lightning #20388); calling it only when its value is written gives the same
    curves and the same numbers for less (scripts/bench/loop.py). Every other metric is the
    model's ``stage_metrics`` (``StageMetrics``), updated by its steps and logged after the
    loss at the end of each stage's epoch.
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
        # a model's metrics per stage: none until the model sets its own
        self.stage_metrics = StageMetrics(lambda stage: {}, stages=())

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

    def stage_step(self, batch: Any, stage: str) -> torch.Tensor:
        """One batch of ``stage`` ('train', 'val' or 'test'): its loss, with the stage's loss and
        metrics updated. The training, validation and test steps below all call it; a model
        whose stages differ by more than their name overrides those steps instead."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.stage_step(batch, "train")

    # None here; a model that overrides them may return what its callbacks read (a forecast)
    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        self.stage_step(batch, "val")
        return None

    def test_step(
        self, batch: Any, batch_idx: int
    ) -> torch.Tensor | dict[str, torch.Tensor] | None:
        self.stage_step(batch, "test")
        return None

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

    def log_stage_metrics(self, stage: str) -> None:
        """Log and reset a stage's ``stage_metrics``, after its loss (called at the end of every
        train, val and test epoch)."""
        for name, values in self.stage_metrics.compute(stage).items():
            self.log_dict(values, prog_bar=(stage, name) in self.stage_metrics.shown)

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

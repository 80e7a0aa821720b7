"""LightningModule for real-valued outputs: sequence regression and direct multi-step
forecasting (every horizon step at once from one encoding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.models.base import SequenceModule
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.metrics import regression_metrics
from rnnlab.utils.errors import ConfigError

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "mae": F.l1_loss,
    "huber": F.huber_loss,
}
Batch = dict[str, torch.Tensor]


class SequenceRegressor(SequenceModule):
    """Encoder -> dropout -> linear head giving ``horizon x num_targets`` values.

    Batches (dicts) hold targets ``y`` in original units and the target normalisation (``shift``,
    ``scale``); the loss is taken on the normalised scale, metrics on the original one.
    ``baselines`` name batch entries holding other forecasts of the same targets (naive,
    seasonal naive, training mean); each gets the same metrics, suffixed with its name.

    ``relative``: the encoder reads the target inputs minus their last observed value and the head
    forecasts the change from it (the targets must be the first input columns). On a trending
    series the test level lies outside the training range; differences from the last value stay
    inside it.
    """

    def __init__(
        self,
        encoder: RNNEncoder,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        horizon: int = 1,
        num_targets: int = 1,
        target_names: list[str] | None = None,
        loss: str = "mse",
        head_dropout: float = 0.0,
        relative: bool = False,
        metrics: list[str] | tuple[str, ...] = ("mae", "rmse"),
        baselines: list[str] | tuple[str, ...] = (),
        plot_windows: int = 0,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        if loss not in LOSSES:
            raise ConfigError(
                f"unknown loss {loss!r}; set model.loss to one of {', '.join(LOSSES)}"
            )
        self.encoder = encoder
        self.horizon, self.num_targets = horizon, num_targets
        self.target_names = list(target_names or [f"target_{i}" for i in range(num_targets)])
        self.head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(encoder.output_size, horizon * num_targets)
        )
        self.loss_name, self.loss_fn = loss, LOSSES[loss]
        self.relative = relative
        self.baselines = list(baselines)
        self.plot_windows = plot_windows
        # One collection per stage and forecaster: sharing one mixes their states.
        self.stage_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        name: regression_metrics(
                            list(metrics), f"{stage}/", "" if name == "model" else f"_{name}"
                        )
                        for name in ["model", *self.baselines]
                    }
                )
                for stage in ("val", "test")
            }
        )
        self._plotted: list[dict[str, torch.Tensor]] = []
        self._plot_index: set[int] = set()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalised forecasts (batch, horizon, targets) for padded ``x`` and its ``lengths``."""
        if not self.relative:
            return self.head(self.encoder(x, lengths)).view(-1, self.horizon, self.num_targets)
        targets = self.num_targets
        last = x[torch.arange(len(x), device=x.device), lengths.to(x.device) - 1, :targets]
        shifted = torch.cat([x[..., :targets] - last[:, None], x[..., targets:]], dim=-1)
        change = self.head(self.encoder(shifted, lengths)).view(-1, self.horizon, targets)
        return change + last[:, None]

    def _denormalise(self, value: torch.Tensor, batch: Batch) -> torch.Tensor:
        return value * batch["scale"][:, None] + batch["shift"][:, None]

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        y = batch["y"]
        normalised = self(batch["x"], batch["lengths"])
        target = (y - batch["shift"][:, None]) / batch["scale"][:, None]
        loss = self.loss_fn(normalised, target)
        self.log_loss(stage, loss, len(y))
        return loss, self._denormalise(normalised.detach(), batch)

    def _evaluate(self, batch: Batch, stage: str) -> torch.Tensor:
        _, prediction = self._step(batch, stage)
        wide = self._metric_dtype()
        extra = {}
        if "mase_scale" in batch:
            extra["scale"] = batch["mase_scale"][:, None].expand_as(batch["y"]).to(wide)
        target = batch["y"].to(wide)
        for name, metrics in self.stage_metrics[stage].items():
            forecast = prediction if name == "model" else batch[name]
            metrics.update(forecast.to(wide), target, **extra)
        return prediction

    def _metric_dtype(self) -> torch.dtype:
        """Metrics are computed in float64: squared errors of values near float32's range would
        overflow to inf (and MASE to 0) in float32. MPS has no float64."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def _widen_metric_states(self) -> None:
        for metrics in self.stage_metrics.values():
            for collection in metrics.values():
                collection.set_dtype(self._metric_dtype())

    def on_validation_epoch_start(self) -> None:
        self._widen_metric_states()

    def _log_metrics(self, stage: str) -> None:
        for name, metrics in self.stage_metrics[stage].items():
            self.log_epoch_metrics(metrics, prog_bar=name == "model")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_metrics("val")

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        prediction = self._evaluate(batch, "test")
        if self._plot_index and "history" in batch:
            for row, index in enumerate(batch["index"].tolist()):
                if index in self._plot_index:
                    self._plotted.append(
                        {
                            "history": batch["history"][row, :, 0].cpu(),
                            "actual": batch["y"][row, :, 0].cpu(),
                            "forecast": prediction[row, :, 0].cpu(),
                            **(
                                {"seasonal naive": batch["seasonal_naive"][row, :, 0].cpu()}
                                if "seasonal_naive" in batch
                                else {}
                            ),
                        }
                    )

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        normalised = self(batch["x"], batch["lengths"])
        return {"prediction": self._denormalise(normalised, batch).cpu()}

    def on_test_epoch_start(self) -> None:
        self._widen_metric_states()
        loaders = self.trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, list) else loaders
        count = len(loader.dataset) if loader is not None else 0  # type: ignore[arg-type]
        if self.plot_windows > 0 and count:
            spaced = torch.linspace(0, count - 1, min(self.plot_windows, count)).round()
            self._plot_index = {int(i) for i in spaced}
        self._plotted = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_metrics("test")
        if self._plotted:
            from rnnlab.utils.plots import log_forecasts

            names = getattr(self.trainer.datamodule, "target_columns", None) or self.target_names
            log_forecasts(self, self._plotted, names[0])
        self._plotted, self._plot_index = [], set()

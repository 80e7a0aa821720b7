"""LightningModule for real-valued outputs: sequence regression (one value per sequence) and the
base of the forecaster (every horizon step at once from one encoding)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.batch import Batch
from rnnlab.models.autoregressive import DECODERS, Autoregressive, check_encoder
from rnnlab.models.base import SequenceModule, StageMetrics
from rnnlab.models.calibration import CALIBRATIONS, SpreadSearch
from rnnlab.models.coverage_calibration import CoverageFit
from rnnlab.models.distributions import output_of
from rnnlab.models.encoder import SequenceEncoder
from rnnlab.models.interval_scores import Scores
from rnnlab.models.metrics import DATA_SCALED, regression_metrics
from rnnlab.models.predictive import Probabilistic, Quantiles, Samples
from rnnlab.utils.errors import ConfigError, choice

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "mae": F.l1_loss,
    "huber": F.huber_loss,
}


def _suggest(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SequenceRegressor(SequenceModule):
    """Encoder -> dropout -> linear head giving ``horizon x num_targets`` values.

    Batches hold targets ``y`` in original units and their normalisation (``Batch.scaling``);
    the loss is taken on the normalised scale, metrics on the original one.
    ``baselines`` name other forecasts of the same targets that the data puts in
    ``Batch.baselines`` (training mean; naive, seasonal naive); each gets the same metrics,
    suffixed with its name. ``test_step`` returns the forecasts in original units (figures
    callbacks read them).

    ``relative``: the encoder reads the target inputs minus their last observed value and the head
    forecasts the change from it (the targets must be the first input columns, as in forecasting
    windows). On a trending series the test level lies outside the training range; differences
    from the last value stay inside it.

    Capability (``rnnlab.capabilities``): ``Averageable``, an ensemble averages predictions in
    original units.
    """

    averaged_output = "prediction"
    # buffers: with model.calibration=spread, one factor; with coverage, one per quantile level
    spread_factor: torch.Tensor
    level_factors: torch.Tensor
    # settings that size the weights: a checkpoint's are checked against its weights before
    # the model is built (rnnlab.checkpoint.weights)
    size_settings: ClassVar[tuple[str, ...]] = ("horizon", "num_targets")

    def __init__(
        self,
        encoder: SequenceEncoder,
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
        monitor: str = "val/loss",
        distribution: str | None = None,
        quantiles: list[float] | tuple[float, ...] | None = None,
        decoder: str = "direct",
        num_samples: int = 100,
        calibration: str = "none",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor)
        choice(loss, LOSSES, "model.loss", "loss")
        self.encoder = encoder
        self.horizon, self.num_targets = horizon, num_targets
        self.target_names = list(target_names or [f"target_{i}" for i in range(num_targets)])
        self.output = output_of(distribution, quantiles)
        choice(decoder, DECODERS, "model.decoder", "decoder")
        if num_samples < 1:
            raise ConfigError(f"model.num_samples must be >= 1, got {num_samples}")
        self.decoder, self.num_samples = decoder, int(num_samples)
        # the autoregressive decoder: a head per step; its forecasts are draws (Samples)
        self.autoregressive: Autoregressive | None = None
        steps = horizon
        if decoder == "autoregressive":
            check_encoder(encoder)
            self.autoregressive = Autoregressive(self.output, horizon, num_targets, relative)
            steps = 1
        # what forecasts and scores read: the head's parameters, or the decoder's draws
        self.forecasts = Samples() if self.autoregressive else self.output
        self.scores = (
            Scores(self.forecasts, quantiles)
            if isinstance(self.forecasts, Probabilistic) and self.output.probabilistic
            else None
        )
        self.calibration = self._calibration(calibration)
        self.head = nn.Sequential(
            nn.Dropout(head_dropout),
            nn.Linear(encoder.output_size, steps * num_targets * self.output.width),
        )
        self.loss_name, self.loss_fn = loss, LOSSES[loss]
        self.relative = relative
        self.metric_names = list(metrics)
        self.baselines = list(baselines)
        # <stage>/<metric> of the model's forecasts and <stage>/<metric>_<baseline> of each
        # baseline's, one collection per stage and forecaster (a shared one mixes their states)
        self.stage_metrics = StageMetrics(
            lambda stage: {
                **{
                    name: regression_metrics(
                        self.metric_names, "", "" if name == "model" else f"_{name}"
                    )
                    for name in ["model", *self.baselines]
                },
                **(self.scores.metrics(self.baselines) if self.scores else {}),
            },
            stages=("val", "test"),
            shown=lambda stage, name: name == "model",
        )

    def _calibration(self, calibration: str) -> SpreadSearch | CoverageFit | None:
        """``model.calibration=spread`` or ``coverage``: the fit run at each validation epoch,
        and what it found (a buffer: checkpoints keep it), which test and predict apply."""
        choice(calibration, CALIBRATIONS, "model.calibration", "calibration")
        if calibration == "none":
            return None
        if self.scores is None or not (self.output.widens and self.forecasts.widens):
            raise ConfigError(
                f"model.calibration={calibration} widens forecast distributions, and this "
                f"model's output ({self.output.name}) has none to widen; set "
                "model.distribution=normal or student_t, or model.quantiles, or "
                "model.calibration=none"
            )
        assert isinstance(self.forecasts, Probabilistic)
        if calibration == "spread":
            self.register_buffer("spread_factor", torch.tensor(1.0))  # float32: MPS has no float64
            return SpreadSearch(self.forecasts)
        if not isinstance(self.forecasts, Quantiles):
            raise ConfigError(
                "model.calibration=coverage fits each central interval of a quantile forecast, "
                f"and this model's forecasts are {self.forecasts.name}; set model.quantiles "
                "(with model.decoder=direct and no model.distribution), or "
                "model.calibration=spread"
            )
        self.register_buffer("level_factors", torch.ones(self.forecasts.width))
        return CoverageFit(self.forecasts)

    def calibrated(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (as ``forecasts`` reads them) widened by the fitted factors, if the model
        is calibrated."""
        if self.calibration is None:
            return values
        spread = isinstance(self.calibration, SpreadSearch)
        factor = self.spread_factor if spread else self.level_factors
        return self.forecasts.widen(values, factor.to(values.dtype))

    def check_data(self, datamodule: Any) -> None:
        """Refuse, before training, baselines the data does not provide and metrics it cannot
        feed (a typo would otherwise fail mid-validation)."""
        provided = datamodule.baseline_names()
        for name in self.baselines:
            if name not in provided:
                raise ConfigError(
                    f"model.baselines has {name!r}{_suggest(name, provided)}, which this data "
                    f"does not provide; it provides: {', '.join(provided) or 'none'}"
                )
        for name in set(self.metric_names) & DATA_SCALED:
            if name not in datamodule.scaled_metrics():
                raise ConfigError(
                    f"model.metrics has {name!r}, which needs a scale only forecasting data "
                    "provides; remove it from model.metrics"
                )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalised forecasts (batch, horizon, targets) for padded ``x`` and its ``lengths``;
        a probabilistic output's parameters add a last dimension (``rnnlab.models.predictive``)."""
        values = self._outputs(x, lengths)
        return values if self.output.probabilistic else values[..., 0]

    def _outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The output's parameters (batch, horizon, targets, width), normalised."""
        shape = (-1, self.horizon, self.num_targets, self.output.width)
        if not self.relative:
            return self.output.arrange(self.head(self.encoder(x, lengths)).view(shape))
        targets = self.num_targets
        last = x[torch.arange(len(x), device=x.device), lengths.to(x.device) - 1, :targets]
        shifted = torch.cat([x[..., :targets] - last[:, None], x[..., targets:]], dim=-1)
        change = self.output.arrange(self.head(self.encoder(shifted, lengths)).view(shape))
        return self.output.moved(change, last)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        scaling = batch.target_scaling()
        target = scaling.normalise(batch.targets())
        if self.autoregressive is not None:  # teacher forcing
            encoder = check_encoder(self.encoder)
            values = self.autoregressive.teacher_forced(encoder, self.head, batch, target)
        else:
            values = self(batch.x, batch.lengths)  # forward: an ensemble replays it (Replay)
            values = values if self.output.probabilistic else values[..., None]
        if isinstance(self.output, Probabilistic):
            return self.output.loss(values, target, scaling), values
        return self.loss_fn(values[..., 0], target), values

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return self._loss(batch)[0]

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        loss, values = self._loss(batch)
        self.log_loss(stage, loss, len(batch))
        return loss, values.detach()

    def sampled(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """The autoregressive decoder's ``num_samples`` draws of each forecast (batch, horizon,
        targets, draws; one draw for a point output), from a generator seeded by the run's
        seed and the batch: the same forecasts on every run."""
        assert self.autoregressive is not None
        paths = self.num_samples if self.output.probabilistic else 1
        generator = torch.Generator(self.device)
        generator.manual_seed(torch.initial_seed() + batch_idx)
        encoder = check_encoder(self.encoder)
        return self.autoregressive.sample(encoder, self.head, batch, paths, generator)

    def _evaluate(
        self, batch: Batch, stage: str, batch_idx: int
    ) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
        """Score a batch; its forecasts in original units and, with a probabilistic output,
        their quantiles by level (from the output's parameters, or the decoder's draws)."""
        _, values = self._step(batch, stage)
        if self.autoregressive is not None:
            values = self.sampled(batch, batch_idx)
        if stage == "val" and self.calibration is not None:
            # validation scores the forecasts as trained, and fits the factor on them
            self.calibration.update(values, batch.target_scaling(), batch.targets())
        elif stage == "test":
            values = self.calibrated(values)
        prediction = self.forecasts.point(values, batch.target_scaling())
        quantile_at: dict[float, torch.Tensor] = {}
        if self.scores is not None:
            dtype = self._metric_dtype()
            quantile_at = self.scores.update(self.stage_metrics, stage, values, batch, dtype)
        y, wide = batch.targets(), self._metric_dtype()
        extra = {}
        if batch.forecast is not None:
            extra["scale"] = batch.forecast.mase_scale[:, None].expand_as(y).to(wide)
        target = y.to(wide)
        for name in ["model", *self.baselines]:
            forecast = prediction if name == "model" else batch.baselines[name]
            self.stage_metrics.update(stage, name, forecast.to(wide), target, **extra)
        return prediction, quantile_at

    def _metric_dtype(self) -> torch.dtype:
        """Metrics are computed in float64: squared errors of values near float32's range would
        overflow to inf (and MASE to 0) in float32. MPS has no float64."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def on_validation_epoch_start(self) -> None:
        self.stage_metrics.set_dtype(self._metric_dtype())
        if self.calibration is not None:
            self.calibration.set_dtype(self._metric_dtype())

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.calibration is None:
            return
        found = self.calibration.compute()
        self.calibration.reset()
        if isinstance(self.calibration, SpreadSearch):
            self.spread_factor.fill_(found["spread_factor"].item())
        else:
            self.level_factors.copy_(found.pop("level_factors"))
        # already summed over every process
        self.log_dict({f"val/{key}": value.float() for key, value in found.items()})

    def on_test_epoch_start(self) -> None:
        self.stage_metrics.set_dtype(self._metric_dtype())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        """The forecasts in original units; with a probabilistic output, a dict of them
        (``prediction``) and their central intervals (``Scores.intervals``), for figures."""
        prediction, quantile_at = self._evaluate(batch, "test", batch_idx)
        if self.scores is None:
            return prediction
        return {"prediction": prediction, **self.scores.intervals(quantile_at)}

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        scaling = batch.target_scaling()
        if self.autoregressive is not None:
            values = self.sampled(batch, batch_idx)
        else:
            values = self._outputs(batch.x, batch.lengths)
        values = self.calibrated(values)
        predicted = {"prediction": self.forecasts.point(values, scaling).float().cpu()}
        if self.scores is not None:
            levels = self.scores.levels
            predicted["quantiles"] = (
                self.scores.output.quantiles(values, scaling, levels).float().cpu()
            )
            predicted["levels"] = torch.tensor(levels, dtype=torch.float64)
        return predicted

    def forward_output(self, average: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Averaged predictions (original units) on the normalised scale ``forward`` gives, by
        the batch's own statistics; the test step maps them back."""
        return batch.target_scaling().normalise(average)

"""Figures in TensorBoard, drawn by callbacks from what the models compute: the test confusion
matrix of a classifier and test forecasts against actuals."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab.batch import Batch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def confusion_figure(matrix: torch.Tensor, class_names: list[str]) -> Figure:
    """Row-normalised confusion matrix with the raw counts written in each cell."""
    # A bare Figure, not pyplot: no global backend or figure registry to touch or leak.
    from matplotlib.figure import Figure

    counts = matrix.detach().cpu().double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in ticks:
        for j in ticks:
            ax.text(
                j,
                i,
                str(int(counts[i, j])),  # Text calls str() on it anyway
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    return fig


def forecast_figure(windows: list[dict[str, torch.Tensor]], target: str) -> Figure:
    """One panel per test window: the input history, the actual future, the model's forecast and
    any baseline, on one time axis (steps relative to the forecast origin)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.2 * len(windows)))
    for i, window in enumerate(windows):
        ax = fig.add_subplot(len(windows), 1, i + 1)
        history = window["history"]
        past = range(-len(history), 0)
        future = range(len(window["actual"]))
        ax.plot(past, history.numpy(), color="grey", label="history")
        ax.plot(future, window["actual"].numpy(), color="black", label="actual")
        ax.plot(future, window["forecast"].numpy(), color="tab:blue", label="forecast")
        for name, values in window.items():
            if name not in ("history", "actual", "forecast"):
                ax.plot(future, values.numpy(), linestyle="--", label=name)
        ax.set_ylabel(target)
        if i == 0:
            ax.legend(loc="upper left", fontsize=7, ncol=4)
    fig.axes[-1].set_xlabel("steps from forecast origin")
    fig.tight_layout()
    return fig


def _add_figure(trainer: L.Trainer, tag: str, make: Callable[[], Figure]) -> None:
    """Draw ``make()`` into every TensorBoard logger of the trainer, on rank 0 only."""
    if not trainer.is_global_zero:
        return
    loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
    if not loggers:
        return
    figure = make()
    for logger in loggers:
        # close=False: the figure never entered pyplot's registry, so there is nothing to close
        logger.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)


class ConfusionMatrixFigure(L.Callback):
    """After a classifier's test, its confusion matrix (counted by the model's
    ``test_confusion``) as the image ``test/confusion_matrix``. Class names come from the data's
    state, never through the config."""

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        confusion = getattr(pl_module, "test_confusion", None)
        if confusion is None or not confusion.update_called:
            return
        matrix = confusion.compute()  # on every rank: compute syncs them
        # trainer.datamodule (None without one) is missing from Lightning's types
        datamodule = getattr(trainer, "datamodule", None)
        names = getattr(datamodule, "classes", None) or cast("list[str]", pl_module.class_names)
        _add_figure(trainer, "test/confusion_matrix", lambda: confusion_figure(matrix, list(names)))


class ForecastFigure(L.Callback):
    """After a forecaster's test, ``windows`` evenly spaced test windows as the image
    ``test/forecasts``: history, actual future, the model's forecast (what ``test_step``
    returns) and the seasonal-naive baseline. Batches without ``history`` are not forecasts
    and draw nothing."""

    def __init__(self, windows: int = 4) -> None:
        self.windows = windows
        self.chosen: set[int] = set()
        self.drawn: list[dict[str, torch.Tensor]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, list) else loaders
        count = len(loader.dataset) if loader is not None else 0
        spaced: torch.Tensor | list[float] = (
            torch.linspace(0, count - 1, min(self.windows, count)).round() if count else []
        )
        self.chosen, self.drawn = {int(i) for i in spaced}, []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(batch, Batch) or batch.history is None or batch.index is None:
            return
        if not isinstance(outputs, torch.Tensor) or batch.y is None:
            return
        for row, index in enumerate(batch.index.tolist()):
            if index in self.chosen:
                window = {
                    "history": batch.history[row, :, 0].cpu(),
                    "actual": batch.y[row, :, 0].cpu(),
                    "forecast": outputs[row, :, 0].detach().cpu(),
                }
                if "seasonal_naive" in batch.baselines:
                    window["seasonal naive"] = batch.baselines["seasonal_naive"][row, :, 0].cpu()
                self.drawn.append(window)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.drawn:
            datamodule = getattr(trainer, "datamodule", None)
            names = getattr(datamodule, "target_columns", None) or ["target"]
            drawn = self.drawn
            _add_figure(trainer, "test/forecasts", lambda: forecast_figure(drawn, names[0]))
        self.chosen, self.drawn = set(), []

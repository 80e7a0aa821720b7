"""Figures in TensorBoard, drawn by callbacks from what the models compute: the test confusion
matrix of a model that counts one (``ConfusionCounts``) and test forecasts against actuals. They
reach a task through ``rnnlab.capabilities`` only, and draw nothing for tasks without them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab import plotting
from rnnlab.batch import Batch
from rnnlab.capabilities import ClassLabels, ConfusionCounts, Described, ForecastLabels

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def run_label(datamodule: Any, pl_module: L.LightningModule) -> str:
    """How a figure's title names the run: its data and its model (each by its
    ``display_name()``, where it has one)."""
    return ", ".join(x.display_name() for x in (datamodule, pl_module) if isinstance(x, Described))


def confusion_figure(matrix: torch.Tensor, class_names: list[str], run: str = "") -> Figure:
    """Row-normalised confusion matrix with the raw counts written in each cell."""
    # A bare Figure, not pyplot: no global backend or figure registry to touch or leak.
    from matplotlib.figure import Figure

    counts = matrix.detach().cpu().double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.5 * len(class_names) + 2)
    grey = plotting.OKABE_ITO["grey"]
    with plotting.styled():
        fig = Figure(figsize=(size + 1, size), layout="constrained")
        ax = fig.add_subplot()
        ax.grid(False)
        image = ax.imshow(rates.numpy(), cmap=plotting.sequential_colormap(), vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class (cells: counts)")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90)
        ax.set_yticks(ticks, class_names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(plotting.title("Test confusion matrix", run))
        for i in ticks:
            for j in ticks:
                ax.text(
                    j,
                    i,
                    str(int(counts[i, j])),  # Text calls str() on it anyway
                    ha="center",
                    va="center",
                    # zeros recede, so the few confusions stand out
                    color="white" if rates[i, j] > 0.5 else "black" if counts[i, j] else grey,
                    fontsize=8,
                )
    return fig


def forecast_figure(
    windows: list[dict[str, torch.Tensor]],
    target: str,
    run: str = "",
    unit: str | None = None,
    step: str | None = None,
) -> Figure:
    """One panel per test window: the input history, the actual future, the model's forecast and
    any baseline, on one time axis (steps relative to the forecast origin). ``unit`` is the
    target's unit and ``step`` what one time step is (e.g. weeks), where known."""
    from matplotlib.figure import Figure

    with plotting.styled():
        fig = Figure(figsize=(8, 2.2 * len(windows) + 0.4), layout="constrained")
        fig.suptitle(plotting.title("Test forecasts", run), fontweight="bold")
        for i, window in enumerate(windows):
            ax = fig.add_subplot(len(windows), 1, i + 1)
            history = window["history"]
            past = range(-len(history), 0)
            future = range(len(window["actual"]))
            # intervals (horizon, 2: low, high) shaded under the lines, the widest lightest
            bands = sorted((n for n in window if n.endswith("interval")), reverse=True)
            for k, name in enumerate(bands):
                low, high = window[name].numpy().T
                color = plotting.role_color("forecast")
                ax.fill_between(
                    future, low, high, color=color, alpha=0.15 + 0.15 * k, linewidth=0, label=name
                )
            for role, steps in (("history", past), ("actual", future), ("forecast", future)):
                color = plotting.role_color(role)
                ax.plot(steps, window[role].numpy(), color=color, label=role)
            drawn = ("history", "actual", "forecast", *bands)
            others = [name for name in window if name not in drawn]
            for k, name in enumerate(others):
                color = plotting.role_color(name, k)
                ax.plot(future, window[name].numpy(), color=color, linestyle="--", label=name)
            ax.axvline(-0.5, color=plotting.OKABE_ITO["grey"], linewidth=0.8, linestyle=":")
            ax.set_ylabel(plotting.with_unit(target, unit))
        # one legend for all panels, below them, where it hides no data
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
        fig.axes[-1].set_xlabel(f"{step or 'steps'} from the forecast origin")
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
    """After the test of a model that counts its confusions (``ConfusionCounts``: a
    classifier), the matrix as the image ``test/confusion_matrix``. Class names come from the
    data's state (``ClassLabels``), never through the config."""

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, ConfusionCounts):
            return
        matrix = pl_module.test_confusion_matrix()  # on every rank: it syncs them
        if matrix is None:
            return
        # trainer.datamodule (None without one) is missing from Lightning's types
        datamodule = getattr(trainer, "datamodule", None)
        names = datamodule.classes if isinstance(datamodule, ClassLabels) else None
        names = names or pl_module.class_names
        run = run_label(datamodule, pl_module)
        _add_figure(
            trainer,
            "test/confusion_matrix",
            lambda: confusion_figure(matrix, list(names), run),
        )


class ForecastFigure(L.Callback):
    """After a forecaster's test, ``windows`` evenly spaced test windows as the image
    ``test/forecasts``: history, actual future, the model's forecast (what ``test_step``
    returns) and the seasonal-naive baseline. Batches without ``Batch.forecast`` (which holds
    the history) are not forecasts and draw nothing. Axes are labelled from the data where it
    names its targets (``ForecastLabels``)."""

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
        if not isinstance(batch, Batch) or batch.forecast is None or batch.index is None:
            return
        # a probabilistic forecaster returns a dict: the forecasts and their intervals
        bands = dict(outputs) if isinstance(outputs, dict) else {}
        forecasts = bands.pop("prediction", outputs)
        if not isinstance(forecasts, torch.Tensor) or batch.y is None:
            return
        for row, index in enumerate(batch.index.tolist()):
            if index in self.chosen:
                window = {
                    "history": batch.forecast.history[row, :, 0].cpu(),
                    "actual": batch.y[row, :, 0].cpu(),
                    "forecast": forecasts[row, :, 0].detach().cpu(),
                    **{name: band[row, :, 0].cpu() for name, band in bands.items()},
                }
                if "seasonal_naive" in batch.baselines:
                    window["seasonal naive"] = batch.baselines["seasonal_naive"][row, :, 0].cpu()
                self.drawn.append(window)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.drawn:
            datamodule = getattr(trainer, "datamodule", None)
            names, unit, step = ["target"], None, None
            if isinstance(datamodule, ForecastLabels):
                names = datamodule.target_columns or names
                unit, step = datamodule.target_unit(names[0]), datamodule.step_unit()
            run, drawn = run_label(datamodule, pl_module), self.drawn
            _add_figure(
                trainer,
                "test/forecasts",
                lambda: forecast_figure(drawn, names[0], run, unit, step),
            )
        self.chosen, self.drawn = set(), []

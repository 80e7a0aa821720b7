"""Figures written to TensorBoard."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

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
                int(counts[i, j]),
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


def _tensorboards(module: L.LightningModule) -> list[TensorBoardLogger]:
    """The trainer's TensorBoard loggers, on rank 0 only (other ranks write nothing)."""
    if module.global_rank != 0:
        return []
    return [lg for lg in module.loggers if isinstance(lg, TensorBoardLogger)]


def _add_figure(module: L.LightningModule, tag: str, make: Callable[[], Figure]) -> None:
    loggers = _tensorboards(module)
    if not loggers:
        return
    figure = make()
    for logger in loggers:
        # close=False: the figure never entered pyplot's registry, so there is nothing to close
        logger.experiment.add_figure(tag, figure, global_step=module.global_step, close=False)


def log_confusion_matrix(module: L.LightningModule, matrix: torch.Tensor, names: list[str]) -> None:
    """Add the test confusion matrix as an image to every TensorBoard logger of the trainer."""
    _add_figure(module, "test/confusion_matrix", lambda: confusion_figure(matrix, names))


def log_forecasts(
    module: L.LightningModule, windows: list[dict[str, torch.Tensor]], target: str
) -> None:
    """Add forecasts against actuals for a few test windows to every TensorBoard logger."""
    _add_figure(module, "test/forecasts", lambda: forecast_figure(windows, target))

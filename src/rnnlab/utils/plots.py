"""Figures written to TensorBoard."""

from __future__ import annotations

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


def log_confusion_matrix(module: L.LightningModule, matrix: torch.Tensor, names: list[str]) -> None:
    """Add the test confusion matrix as an image to every TensorBoard logger of the trainer."""
    loggers = [lg for lg in module.loggers if isinstance(lg, TensorBoardLogger)]
    if not loggers or module.global_rank != 0:
        return
    figure = confusion_figure(matrix, names)
    for logger in loggers:
        # close=False: the figure never entered pyplot's registry, so there is nothing to close
        logger.experiment.add_figure(
            "test/confusion_matrix", figure, global_step=module.global_step, close=False
        )

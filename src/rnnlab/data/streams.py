"""Parallel streams of a text read in consecutive windows (truncated backpropagation through
time): the rows a text is cut into, each rank's block of them under DDP, and the dataset that
yields window ``i`` of every stream as batch ``i``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from rnnlab.batch import IGNORE_TARGET as IGNORE
from rnnlab.batch import Batch
from rnnlab.utils.errors import DataError

# Chunks has a length (the progress bar and schedulers read it) and is only ever read in the
# main process, so Lightning's caution about lengths of iterable datasets in workers is moot.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


def to_rows(values: np.ndarray, rows: int, fill: float) -> torch.Tensor:
    """``values`` cut into ``rows`` contiguous rows of equal length, the last padded."""
    width = max(1, math.ceil(len(values) / rows))
    padded = np.full(rows * width, fill, dtype=values.dtype)
    padded[: len(values)] = values
    return torch.from_numpy(padded.reshape(rows, width))


def row_lengths(total: int, rows: int) -> torch.Tensor:
    """How many of each row's places ``to_rows`` fills with ``total`` values (int64)."""
    width = max(1, math.ceil(total / rows))
    return (total - torch.arange(rows) * width).clamp(0, width)


class Chunks(IterableDataset):
    """Consecutive windows of parallel streams, in order: batch ``i`` is window ``i``.

    ``plan()`` gives the window lengths of the coming pass (fixed or random truncation
    lengths), read at each pass, so they can follow the epoch. ``inputs`` and ``targets`` may be
    held in any integer type (a text's compact ids): each window is widened to int64. Targets
    from each row's length in ``lengths`` on are padding (``IGNORE_TARGET`` in the batch);
    without ``lengths`` every target counts.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        baselines: dict[str, torch.Tensor],
        plan: Callable[[], list[int]],
        lengths: torch.Tensor | None = None,
    ) -> None:
        self.inputs, self.targets, self.baselines, self.plan = inputs, targets, baselines, plan
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.plan())

    def __iter__(self) -> Iterator[Batch]:
        start = 0
        for size in self.plan():
            window = slice(start, start + size)
            targets = self.targets[:, window].long()
            if self.lengths is None:
                lengths = (targets != IGNORE).sum(dim=1)
            else:
                lengths = (self.lengths - start).clamp(0, targets.shape[1])
                targets[torch.arange(targets.shape[1]) >= lengths[:, None]] = IGNORE
            yield Batch(
                x=self.inputs[:, window].long(),
                lengths=lengths,
                y=targets,
                baselines={k: v[:, window] for k, v in self.baselines.items()},
            )
            start += size


def fixed_windows(total: int, size: int) -> list[int]:
    """Windows of ``size`` steps covering ``total``, the last one shorter if need be."""
    return [min(size, total - start) for start in range(0, total, size)]


def one_batch(batch: Any) -> Batch:
    return batch  # Chunks yields whole batches (batch_size=None hands them over one by one)


def rank_rows(rows: torch.Tensor, world: int, rank: int, fill: float) -> torch.Tensor:
    """This rank's contiguous block of ``rows``; all-padding rows make the count divisible."""
    per_rank = math.ceil(len(rows) / world)
    extra = per_rank * world - len(rows)
    if extra:
        rows = torch.cat([rows, rows.new_full((extra, *rows.shape[1:]), fill)])
    return rows[rank * per_rank : (rank + 1) * per_rank]


def check_part_sizes(sizes: dict[str, int], where: str, batch_size: int, bptt: int) -> None:
    """Refuse a text whose parts ('train', 'val', 'test': their lengths in ``sizes``) are too
    short: training needs ``batch_size`` streams of ``bptt + 1`` characters, scoring two."""
    need = batch_size * (bptt + 1)
    if sizes["train"] < need:
        raise DataError(
            f"{where}: the train part has {sizes['train']} characters, fewer than "
            f"data.batch_size x (data.bptt + 1) = {need}; use a longer text or lower "
            "batch_size or bptt"
        )
    for name in ("val", "test"):
        if sizes[name] < 2:
            raise DataError(
                f"{where}: the {name} part has {sizes[name]} characters (at least 2 "
                f"needed); use a longer text or a larger data.{name}_fraction"
            )

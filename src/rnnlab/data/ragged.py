"""Variable-length sequences kept in one array: ``values`` (every sequence's time steps, one
after another; time, channels) and ``offsets`` (sequence ``i`` is rows ``offsets[i]`` to
``offsets[i + 1]``), read as a list of views of it.

A data set of a million short sequences as a million separately allocated tensors costs an
allocation and a tensor's bookkeeping each, and converting them (float64 to float32) or
normalising them one by one makes a second full copy beside the first; packed, each step is one
array operation on one block of memory, and the list's items are views that copy nothing.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch


class PackedSequences(list[torch.Tensor]):
    """A list of (time, channels) tensors that are views of one ``values`` tensor, cut at
    ``offsets`` (int64, one more than the sequences). Concatenating or copying it gives a plain
    list (of the same views)."""

    def __init__(self, values: torch.Tensor, offsets: np.ndarray) -> None:
        super().__init__(values[a:b] for a, b in itertools.pairwise(offsets.tolist()))
        self.values, self.offsets = values, offsets

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample_at(self, rows: np.ndarray) -> np.ndarray:
        """The sequence each of ``rows`` (of ``values``) belongs to."""
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def as_float32(self) -> PackedSequences:
        """The same sequences in float32: one conversion of ``values``."""
        return PackedSequences(self.values.float(), self.offsets)


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """The offsets of sequences of these ``lengths``: 0, then their running sums (int64)."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)

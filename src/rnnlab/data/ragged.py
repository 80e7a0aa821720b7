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
from collections.abc import Sequence
from typing import overload

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


class LazySequences(Sequence[torch.Tensor]):
    """Tensors made one at a time when read (``item``); a slice gives a list of them."""

    def item(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> list[torch.Tensor]: ...

    def __getitem__(self, index: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(index, slice):
            return [self.item(i) for i in range(*index.indices(len(self)))]
        return self.item(index)


class MappedSequences(LazySequences):
    """Sequences ``samples[i]`` of float32 ``values`` (time, channels; in memory or memory-mapped
    from the disk cache) cut at ``offsets``, made into tensors (views, no copy) when read: a
    million sequences are one array and two index arrays, not a million tensor objects, and a
    subset (``take``) is an index array. ``refused``: the index and float64 values of the first
    sequence that training refuses, found while the file was read (``sequences.check_sequences``
    raises its error); the values were checked, and made float32, when the file was read."""

    def __init__(
        self,
        values: np.ndarray,
        offsets: np.ndarray,
        samples: np.ndarray | None = None,
        refused: tuple[int, np.ndarray] | None = None,
    ) -> None:
        self.values, self.offsets, self.refused = values, offsets, refused
        self.samples = np.arange(len(offsets) - 1) if samples is None else samples

    def __len__(self) -> int:
        return len(self.samples)

    def item(self, index: int) -> torch.Tensor:
        sample = int(self.samples[index])
        return torch.from_numpy(self.values[self.offsets[sample] : self.offsets[sample + 1]])

    @property
    def lengths(self) -> np.ndarray:
        """Each sequence's number of time steps."""
        return self.offsets[self.samples + 1] - self.offsets[self.samples]

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])

    def take(self, indices: np.ndarray) -> MappedSequences:
        """The sequences at ``indices`` of this one (no copy of values)."""
        return MappedSequences(self.values, self.offsets, self.samples[indices], self.refused)


def take(sequences: Sequence[torch.Tensor], indices: np.ndarray) -> Sequence[torch.Tensor]:
    """The sequences at ``indices``: mapped ones as an index array, others as a list."""
    if isinstance(sequences, MappedSequences):
        return sequences.take(indices)
    return [sequences[i] for i in indices]


def lengths_of(sequences: Sequence[torch.Tensor]) -> list[int]:
    """Each sequence's number of time steps (of mapped ones, without making their tensors)."""
    if isinstance(sequences, MappedSequences):
        return sequences.lengths.tolist()
    return [len(s) for s in sequences]

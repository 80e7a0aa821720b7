"""Batching for variable-length sequences: pad + lengths, and a length-bucketing batch sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler


class SequenceDataset(Dataset):
    """Sequences of shape (time, features) with one target each."""

    def __init__(self, sequences: Sequence[torch.Tensor], targets: torch.Tensor) -> None:
        self.sequences = sequences
        self.targets = targets

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequences[index], self.targets[index]


def pad_collate(
    batch: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(padded (B, T_max, F), lengths (B,) int64 on CPU, targets)``.

    Packing happens inside the model's ``forward``: a PackedSequence does not survive DataLoader
    pinning, device transfer or DDP scatter, while a padded tensor plus lengths does.
    """
    sequences, targets = zip(*batch, strict=True)
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    return pad_sequence(list(sequences), batch_first=True), lengths, torch.stack(targets)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so padding (and packed-kernel waste) stays small.

    Each epoch shuffles all indices, cuts them into pools of ``batch_size * pool_batches``, sorts
    each pool by length, cuts batches, and shuffles the batch order. Seeded by ``seed + epoch``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        pool_batches: int = 50,
    ) -> None:
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.pool_batches = pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            # stable sort keeps the shuffled order among equal lengths
            chunk = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches += [
                chunk[i : i + self.batch_size].tolist()
                for i in range(0, len(chunk), self.batch_size)
            ]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        yield from batches

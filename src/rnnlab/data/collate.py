"""Batching for variable-length sequences: pad + lengths, and a length-bucketing batch sampler."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, Dataset, RandomSampler, Sampler, SequentialSampler

from rnnlab.batch import Batch


class SequenceDataset(Dataset):
    """Sequences of shape (time, features) with one target each."""

    def __init__(self, sequences: Sequence[torch.Tensor], targets: torch.Tensor) -> None:
        self.sequences = sequences
        self.targets = targets

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequences[index], self.targets[index]


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Padded ``x`` (B, T_max, F), ``lengths`` (B,) int64 on the CPU, and the stacked targets.

    Packing happens inside the model's ``forward``: a PackedSequence does not survive DataLoader
    pinning, device transfer or DDP scatter, while a padded tensor plus lengths does.
    """
    sequences, targets = zip(*batch, strict=True)
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    return Batch(pad_sequence(list(sequences), batch_first=True), lengths, torch.stack(targets))


class EpochRandomSampler(RandomSampler):
    """A random order of the dataset that depends only on ``seed`` and the epoch (``set_epoch``),
    so a resumed run sees the same batches. Lightning recognises it as shuffling and, under DDP,
    swaps it for a ``DistributedSampler`` inside ``BucketBatchSampler``."""

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.data_source), generator=generator)
        # a block of Python ints at a time: 100,000,000 windows would take 3.6 GB as one list
        for start in range(0, len(order), 1 << 16):
            yield from order[start : start + (1 << 16)].tolist()


class BucketBatchSampler(BatchSampler):
    """Batches of similar length, so padding (and packed-kernel waste) stays small.

    Takes the indices its ``sampler`` yields (a shuffled order, or under DDP this rank's share:
    it follows PyTorch's ``BatchSampler`` interface, so Lightning can swap in a
    ``DistributedSampler``), cuts them into pools of ``batch_size * pool_batches``, sorts each
    pool by length, cuts batches and, when ``shuffle``, shuffles the batch order, seeded by
    ``seed`` plus the sampler's epoch.
    """

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[int] = (),
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 50,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = torch.as_tensor(list(lengths))
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.int64)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            # stable sort keeps the sampler's order among equal lengths
            chunk = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches += [
                chunk[i : i + self.batch_size].tolist()
                for i in range(0, len(chunk), self.batch_size)
            ]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            epoch = getattr(self.sampler, "epoch", 0)
            generator = torch.Generator().manual_seed(self.seed + epoch)
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        yield from batches


def bucket_sampler(
    lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0
) -> BucketBatchSampler:
    """Length-bucketed batches over a dataset whose items have these ``lengths``."""
    order: Sampler[int] = (
        EpochRandomSampler(range(len(lengths)), seed) if shuffle else SequentialSampler(lengths)
    )
    return BucketBatchSampler(order, batch_size, lengths=lengths, shuffle=shuffle, seed=seed)

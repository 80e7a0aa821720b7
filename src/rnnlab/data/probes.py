"""Long-range memory probes: synthetic sequence tasks generated from the seed, each with the
trivial predictor it is scored against (Batch.baselines).

- ``AddingDataModule``: the adding problem (Hochreiter & Schmidhuber 1997, in the set-up of Le et
  al. 2015). Each step has a value drawn from U(0, 1) and a marker; exactly two markers are 1, one
  in each half of the sequence; the target is the sum of the two marked values. Predicting 1
  whatever the input has MSE Var(U + U') = 1/6 ≈ 0.167.
- ``CopyDataModule``: copy memory (Arjovsky et al. 2016). Ten symbols from {1..8}, ``length - 1``
  blanks (0), a delimiter (9), ten more blanks; the target is ``length + 10`` blanks, then the ten
  symbols. A memoryless predictor (blank, then uniform over the eight symbols) has mean
  cross-entropy 10·log(8) / (length + 20) per step.

Train, validation and test sets are consecutive draws from one generator seeded by ``seed``:
disjoint (no sequence of one appears in another, with probability 1 for these sizes) and the
same on every run with that seed. There is nothing to fit, so the checkpointed state only records
the settings, and eval regenerates the very same test set from the stored config.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from rnnlab.batch import Batch, TargetScaling
from rnnlab.data.base import TaskDataModule
from rnnlab.utils.errors import ConfigError

SPLITS = ("train", "val", "test")
COPY_SYMBOLS = 8  # data symbols 1..8; 0 is the blank, 9 the delimiter
COPY_MEMORY = 10  # symbols to remember


class ProbeDataModule(TaskDataModule):
    """A synthetic probe of ``length`` time steps (the memory span asked for) with
    ``train_size``/``val_size``/``test_size`` sequences; subclasses say how to draw them.
    It has no prediction file format (``TaskDataModule.setup_predict`` refuses)."""

    instead_of_predict = (
        "a probe's data is generated from its seed: evaluate its checkpoint with rnnlab.eval"
    )

    def __init__(
        self,
        length: int = 200,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 50,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        if length < 2:
            raise ConfigError(f"data.length must be >= 2 (the span to remember), got {length}")
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        for split, size in sizes.items():
            if size < 1:
                raise ConfigError(f"data.{split}_size must be >= 1, got {size}")
        self.length = length
        self.sizes = sizes
        self.splits: dict[str, TensorDataset] = {}

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` inputs (count, time, features) and their targets."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self.setup_predict("")  # refuses: there is no prediction input
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        for split in SPLITS:
            self.splits[split] = TensorDataset(*self.draw(self.sizes[split], generator))

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        x = torch.stack([item[0] for item in items])
        lengths = torch.full((len(items),), x.shape[1], dtype=torch.int64)
        return Batch(x, lengths, torch.stack([item[1] for item in items]))

    def dataset(self, split: str) -> Dataset:
        return self.splits[split]

    def baseline_names(self) -> tuple[str, ...]:
        return ("baseline",)

    def state_dict(self) -> dict[str, Any]:
        # nothing is fitted; the settings are kept so a checkpoint says what it was trained on
        return {"length": self.length, "sizes": dict(self.sizes)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if int(state_dict["length"]) != self.length:
            raise ValueError(f"length {state_dict['length']} != configured {self.length}")


class AddingDataModule(ProbeDataModule):
    """The adding problem; a batch's ``y`` is (batch, 1, 1), in the units the loss is taken in
    (no normalisation: the loss is the MSE itself), and its ``baseline`` predicts 1."""

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.length // 2
        values = torch.rand(count, self.length, generator=generator)
        first = torch.randint(0, half, (count,), generator=generator)
        second = torch.randint(half, self.length, (count,), generator=generator)
        markers = torch.zeros(count, self.length)
        rows = torch.arange(count)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        target = values[rows, first] + values[rows, second]
        return torch.stack([values, markers], dim=-1), target.view(count, 1, 1)

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        batch = super().collate(items)
        size = len(batch)
        batch.scaling = TargetScaling(torch.zeros(size, 1), torch.ones(size, 1))
        batch.baselines = {"baseline": torch.ones(size, 1, 1)}
        return batch

    def model_settings(self) -> dict[str, Any]:
        return {"encoder": {"input_size": 2}, "horizon": 1, "num_targets": 1}


class CopyDataModule(ProbeDataModule):
    """Copy memory: inputs one-hot over 10 symbols (0 blank, 1-8 data, 9 delimiter), sequences
    of ``length + 20`` steps; ``y`` is the symbol due at each step (batch, time). The
    ``baseline`` is the memoryless predictor's log-probabilities (batch, time, symbols)."""

    num_classes = COPY_SYMBOLS + 2  # blank, eight symbols, delimiter

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.length + 2 * COPY_MEMORY
        symbols = torch.randint(1, COPY_SYMBOLS + 1, (count, COPY_MEMORY), generator=generator)
        inputs = torch.zeros(count, total, dtype=torch.int64)
        inputs[:, :COPY_MEMORY] = symbols
        inputs[:, self.length + COPY_MEMORY - 1] = COPY_SYMBOLS + 1  # the delimiter
        target = torch.zeros(count, total, dtype=torch.int64)
        target[:, -COPY_MEMORY:] = symbols
        one_hot = torch.nn.functional.one_hot(inputs, self.num_classes).float()
        return one_hot, target

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
        batch = super().collate(items)
        batch.baselines = {"baseline": self.memoryless(len(batch))}
        return batch

    def memoryless(self, size: int) -> torch.Tensor:
        """Log-probabilities of the best predictor that remembers nothing: a blank for sure
        for ``length + 10`` steps, then each of the eight symbols with 1/8."""
        total = self.length + 2 * COPY_MEMORY
        log_probs = torch.full((total, self.num_classes), -math.inf)
        log_probs[:-COPY_MEMORY, 0] = 0.0
        log_probs[-COPY_MEMORY:, 1 : COPY_SYMBOLS + 1] = -math.log(COPY_SYMBOLS)
        return log_probs.expand(size, -1, -1)

    def baseline_loss(self) -> float:
        """The memoryless predictor's mean cross-entropy per step: 10·log(8) / (length + 20)."""
        return COPY_MEMORY * math.log(COPY_SYMBOLS) / (self.length + 2 * COPY_MEMORY)

    def model_settings(self) -> dict[str, Any]:
        return {"encoder": {"input_size": self.num_classes}, "num_classes": self.num_classes}

"""First bit: random bit sequences of varying length, labelled with their first bit. The model
reads the whole sequence and answers after its last valid step, so it must carry the first bit
through up to ``max_length - 1`` later ones (and never read padding as a step); a one-layer GRU
learns that to near-perfect accuracy in an epoch or two.

The test split is drawn from ``test_seed``, the same for every run, and no training or
validation sequence repeats a test one; training and validation are drawn from the run's
``seed``. So two seeds' runs are scored on one test split and ensemble together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from rnnlab.batch import Batch
from rnnlab.data.base import TaskDataModule
from rnnlab.utils.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def label(bits: torch.Tensor) -> int:
    """A sequence's class: its first bit."""
    return int(bits[0])


def as_input(bits: torch.Tensor) -> torch.Tensor:
    """A bit sequence as the model reads it: (time, 1), 0 -> -1 and 1 -> +1, so no valid step
    looks like padding (zeros)."""
    return (2.0 * bits.float() - 1.0).unsqueeze(-1)


class BitSequences(Dataset):
    """Bit sequences (int64, time) and their labels (None for predictions)."""

    def __init__(self, sequences: list[torch.Tensor], labels: torch.Tensor | None) -> None:
        self.sequences, self.labels = sequences, labels

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | None]:
        target = None if self.labels is None else int(self.labels[index])
        return self.sequences[index], target


class FirstBitDataModule(TaskDataModule):
    """First bits of ``min_length``..``max_length`` random bits; ``train_size``/``val_size``/
    ``test_size`` sequences. Nothing is fitted: the state records the settings the splits were
    drawn with, and a state that does not match this module's settings is refused."""

    def __init__(
        self,
        min_length: int = 4,
        max_length: int = 20,
        train_size: int = 500,
        val_size: int = 200,
        test_size: int = 300,
        test_seed: int = 12345,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if not 1 <= min_length <= max_length:
            raise ConfigError(
                f"data.min_length and data.max_length must satisfy 1 <= min <= max, got "
                f"{min_length} and {max_length}"
            )
        sizes = {"train_size": train_size, "val_size": val_size, "test_size": test_size}
        for name, size in sizes.items():
            if size < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {size}")
        distinct = 2 ** (max_length + 1) - 2**min_length  # sequences of those lengths
        # distinct sequences are drawn by rejection: leave plenty to draw from
        if train_size + val_size + test_size > distinct // 2:
            raise ConfigError(
                f"{train_size + val_size + test_size} sequences asked for, but lengths "
                f"{min_length}..{max_length} have only {distinct} distinct ones (at most half "
                "are drawn); raise data.max_length or lower the sizes"
            )
        self.min_length, self.max_length = min_length, max_length
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.test_seed = test_seed
        self.splits: dict[str, BitSequences] = {}

    def draw(
        self, count: int, generator: torch.Generator, exclude: set[tuple[int, ...]]
    ) -> list[torch.Tensor]:
        """``count`` distinct random bit sequences none of which is in ``exclude`` (which
        grows by them)."""
        drawn: list[torch.Tensor] = []
        while len(drawn) < count:
            span = (self.min_length, self.max_length + 1)
            length = int(torch.randint(*span, (1,), generator=generator))
            bits = torch.randint(0, 2, (length,), generator=generator)
            key = tuple(bits.tolist())
            if key not in exclude:
                exclude.add(key)
                drawn.append(bits)
        return drawn

    def labelled(self, sequences: list[torch.Tensor]) -> BitSequences:
        return BitSequences(sequences, torch.tensor([label(s) for s in sequences]))

    # --- the contract ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if "predict" not in self.splits:
                raise ConfigError("no prediction input: set input=<file> for rnnlab.predict")
            return
        if all(split in self.splits for split in SPLITS):
            return
        seen: set[tuple[int, ...]] = set()
        test = self.draw(self.sizes["test"], torch.Generator().manual_seed(self.test_seed), seen)
        generator = torch.Generator().manual_seed(self.seed)
        train = self.draw(self.sizes["train"], generator, seen)
        val = self.draw(self.sizes["val"], generator, seen)
        self.splits.update(
            train=self.labelled(train), val=self.labelled(val), test=self.labelled(test)
        )

    def model_settings(self) -> dict[str, Any]:
        return {"encoder": {"input_size": 1}}

    def dataset(self, split: str) -> Dataset:
        return self.splits[split]

    def collate(self, items: list[tuple[torch.Tensor, int | None]]) -> Batch:
        sequences = [as_input(bits) for bits, _ in items]
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
        targets = [target for _, target in items]
        y = None if targets[0] is None else torch.tensor(targets, dtype=torch.int64)
        return Batch(x=pad_sequence(sequences, batch_first=True), lengths=lengths, y=y)

    def predict_dataloader(self) -> DataLoader:
        return self.split_loader("predict", shuffle=False)

    def setup_predict(self, path: str) -> None:
        """Read ``path``: one sequence per line, written as 0s and 1s ('0110'); blank lines
        and lines starting with '#' are skipped."""
        file = Path(path)
        if not file.is_file():
            raise DataError(f"input {path} does not exist; pass a file of 0/1 lines")
        sequences = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if set(text) - {"0", "1"}:
                raise DataError(
                    f"{path} line {number}: {text[:20]!r} is not a sequence of 0s and 1s"
                )
            sequences.append(torch.tensor([int(c) for c in text], dtype=torch.int64))
        if not sequences:
            raise DataError(f"{path} holds no sequences (one line of 0s and 1s each)")
        self.splits["predict"] = BitSequences(sequences, None)

    def prediction_frame(self, outputs: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
        """One row per input line: the bits, the predicted first bit and the probability that
        it is a 1."""
        probabilities = torch.cat([o["probabilities"] for o in outputs])
        sequences = self.splits["predict"].sequences
        return pd.DataFrame(
            {
                "bits": ["".join(str(b) for b in s.tolist()) for s in sequences],
                "first_bit": probabilities.argmax(dim=-1).tolist(),
                "p_one": probabilities[:, 1].tolist(),
            }
        )

    def display_name(self) -> str:
        return f"first bit of {self.min_length}-{self.max_length} bits"

    # --- checkpoint state: plain types only ------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "test_seed": self.test_seed,
            "sizes": dict(self.sizes),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key, value in state_dict.items():
            if mine.get(key) != value:
                raise ValueError(f"{key} is {value!r} in the state but {mine.get(key)!r} here")

"""What a task may offer beyond its contract, for the commands and callbacks that need it.

Every task meets the contract of ``rnnlab.data.base.TaskDataModule`` and
``rnnlab.models.base.SequenceModule``. Ensembling, text generation and figures need more, and
only some tasks have it: each such capability is a Protocol below. A task has one by implementing
its members (no registration, no base class); whatever uses it checks ``isinstance(obj,
Capability)``, never a task's class. Without it a command refuses the checkpoint in one line
(``rnnlab.ensemble``, ``rnnlab.generate``) and a callback draws nothing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from rnnlab.batch import Batch


@runtime_checkable
class Described(Protocol):
    """Names itself in a few words for a run's first log line and its figures' titles: data by
    its data set ('JapaneseVowels'), a model by its encoder ('BiLSTM, 64 units'). The contract's
    base classes provide it."""

    def display_name(self) -> str: ...


def name_of(thing: object) -> str:
    """``thing.display_name()``, or its class's name where it has none."""
    return thing.display_name() if isinstance(thing, Described) else type(thing).__name__


# --- rnnlab.ensemble -------------------------------------------------------------------------
@runtime_checkable
class Averageable(Protocol):
    """A model whose runs an ensemble averages (``rnnlab.ensemble``).

    ``averaged_output`` names the entry of ``predict_step``'s dict that is averaged over the
    members (class probabilities, predictions in original units) and that the data's
    ``prediction_frame`` reads. ``forward_output`` turns one test batch's rows of that average
    back into what ``forward(batch.x, batch.lengths)`` returns for the batch; the ensemble
    hands them to the model's own ``test_step`` in place of ``forward``'s, so the test step
    must call ``forward`` once per batch, and the ensemble's ``test/<metric>`` means what a
    single run's does.
    """

    averaged_output: str

    def forward_output(self, average: torch.Tensor, batch: Batch) -> torch.Tensor: ...


# --- rnnlab.generate and the text_sample callback --------------------------------------------
class Vocabulary(Protocol):
    """Characters to ids and back (id 0: a character the model never saw)."""

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: list[int]) -> str: ...


@runtime_checkable
class TextGenerator(Protocol):
    """A model that continues a text: ``length`` character ids sampled after ``prompt``'s, from
    ``softmax(logits / temperature)`` over the ``top_k`` most likely (0: all), drawing from
    ``generator`` only (``rnnlab.sampling`` turns text into ids and back)."""

    def generate(
        self,
        prompt: list[int],
        length: int,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> list[int]: ...


@runtime_checkable
class TextData(Protocol):
    """The data of a ``TextGenerator``: its vocabulary (None until set up or restored) and the
    opening characters of a part ('val'), the text sample's default prompt."""

    @property
    def vocab(self) -> Vocabulary | None: ...

    def opening(self, part: str, characters: int = 40) -> str: ...


# --- figures (rnnlab.callbacks.figures) ------------------------------------------------------
@runtime_checkable
class ConfusionCounts(Protocol):
    """A model that counts its test predictions by true and predicted class: the
    ``confusion_matrix_figure`` callback draws them. ``class_names`` label the classes where
    the data names none ('0', '1', ...)."""

    class_names: list[str]

    def test_confusion_matrix(self) -> torch.Tensor | None:
        """The test epoch's (true, predicted) counts, summed over DDP ranks (call it on every
        rank); None before any test batch."""
        ...


@runtime_checkable
class ClassLabels(Protocol):
    """Data whose classes have names, in the models' class order (None before setup): the
    confusion matrix's axes."""

    classes: list[str] | None


@runtime_checkable
class ForecastLabels(Protocol):
    """Data of forecasts: the target columns' names and, where known, a column's unit and what
    one time step is (e.g. weeks), for the ``forecast_figure`` callback's axes."""

    target_columns: list[str]

    def target_unit(self, column: str) -> str | None: ...

    def step_unit(self) -> str | None: ...

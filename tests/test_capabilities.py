"""Commands and callbacks reach a task through its capabilities (``rnnlab.capabilities``), never
its class: which tasks have which, what they promise, and the one-line refusals without them."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rnnlab
from rnnlab.batch import Batch, TargetScaling
from rnnlab.callbacks.figures import ConfusionMatrixFigure
from rnnlab.callbacks.text_sample import TextSample
from rnnlab.capabilities import (
    Averageable,
    ClassLabels,
    ConfusionCounts,
    Described,
    ForecastLabels,
    TextData,
    TextGenerator,
)
from rnnlab.data.base import TaskDataModule
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.data.probes import AddingDataModule, CopyDataModule
from rnnlab.data.regression import RegressionDataModule
from rnnlab.data.text import TextDataModule, Vocabulary
from rnnlab.ensemble import ensemble
from rnnlab.generate import generate
from rnnlab.models.base import SequenceModule
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.encoder import RNNEncoder
from rnnlab.models.forecaster import Forecaster
from rnnlab.models.language import LanguageModel
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.models.tagger import SequenceTagger
from rnnlab.train import train
from rnnlab.utils.errors import DataError
from tests.conftest import compose_config

SOURCE = Path(rnnlab.__file__).parent
TASK_MODULES = [
    "rnnlab.models.classifier",
    "rnnlab.models.regressor",
    "rnnlab.models.forecaster",
    "rnnlab.models.language",
    "rnnlab.models.tagger",
    "rnnlab.data.classification",
    "rnnlab.data.regression",
    "rnnlab.data.forecast",
    "rnnlab.data.text",
    "rnnlab.data.probes",
]
# the commands, the sampling they share with a callback, and every callback
TASK_BLIND = [
    *(SOURCE / f"{name}.py" for name in ("train", "eval", "predict", "generate", "ensemble")),
    SOURCE / "sampling.py",
    *sorted((SOURCE / "callbacks").glob("*.py")),
]


def _task_classes() -> set[str]:
    """The DataModules and LightningModules the task modules define."""
    names = set()
    for module_name in TASK_MODULES:
        for name, value in vars(importlib.import_module(module_name)).items():
            defined_here = inspect.isclass(value) and value.__module__ == module_name
            if defined_here and issubclass(value, L.LightningModule | L.LightningDataModule):
                names.add(name)
    return names


def _task_references(path: Path, classes: set[str]) -> list[str]:
    """Where ``path`` imports a task module or names a task class."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [f"imports {m}" for m in modules if m in TASK_MODULES]
            found += [f"imports {a.name}" for a in node.names if a.name in classes]
        elif isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name in TASK_MODULES]
        elif isinstance(node, ast.Name) and node.id in classes:
            found.append(f"names {node.id} (line {node.lineno})")
        elif isinstance(node, ast.Attribute) and node.attr in classes:
            found.append(f"names {node.attr} (line {node.lineno})")
    return found


def test_no_command_or_callback_imports_or_names_a_task_class():
    classes = _task_classes()
    # the check sees every task: a renamed module would otherwise make it pass vacuously
    assert {"SequenceClassifier", "LanguageModel", "TextDataModule", "CopyDataModule"} <= classes
    assert len(TASK_BLIND) > 8
    offences = {p.name: _task_references(p, classes) for p in TASK_BLIND}
    assert {name: found for name, found in offences.items() if found} == {}


def test_the_check_finds_an_import_and_a_name(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        "import rnnlab.data.text\n"
        "from rnnlab.models import classifier\n"
        "from rnnlab.models.language import LanguageModel as LM\n"
        "def f(m):\n    return isinstance(m, classifier.SequenceClassifier)\n"
    )
    found = _task_references(leaky, _task_classes())
    assert found == [
        "imports rnnlab.data.text",
        "imports rnnlab.models.classifier",
        "imports rnnlab.models.language",
        "imports LanguageModel",
        "names SequenceClassifier (line 5)",
    ]


# --- which task has which capability ---------------------------------------------------------
def _optimizer() -> Any:
    return functools.partial(torch.optim.Adam, lr=1e-3)


def _models() -> dict[str, SequenceModule]:
    return {
        "classifier": SequenceClassifier(RNNEncoder(3, hidden_size=4), 2, _optimizer()),
        "regressor": SequenceRegressor(RNNEncoder(3, hidden_size=4), _optimizer()),
        "forecaster": Forecaster(RNNEncoder(3, hidden_size=4), _optimizer(), horizon=2),
        "language": LanguageModel(
            RNNEncoder(8, hidden_size=8, bidirectional=False), 5, _optimizer(), embedding_size=8
        ),
        "tagger": SequenceTagger(RNNEncoder(3, hidden_size=4, pooling="none"), 3, _optimizer()),
    }


def _datamodules() -> dict[str, TaskDataModule]:
    frame = pd.DataFrame({"time": range(10), "value": range(10)})
    return {
        "classification": ClassificationDataModule(),
        "regression": RegressionDataModule(),
        "forecast": ForecastDataModule(frame=frame, lookback=2, horizon=1),
        "text": TextDataModule(),
        "adding": AddingDataModule(),
        "copy": CopyDataModule(),
    }


MODELS = {"classifier", "regressor", "forecaster", "language", "tagger"}
DATA = {"classification", "regression", "forecast", "text", "adding", "copy"}
HAS = {
    Averageable: {"classifier", "regressor", "forecaster"},
    ConfusionCounts: {"classifier"},
    TextGenerator: {"language"},
    Described: MODELS | DATA,
    TextData: {"text"},
    ClassLabels: {"classification"},
    ForecastLabels: {"forecast"},
}


@pytest.mark.parametrize("capability", list(HAS), ids=lambda c: c.__name__)
def test_each_task_has_the_capabilities_it_should_and_no_other(capability):
    tasks = {**_models(), **_datamodules()}
    assert set(tasks) == MODELS | DATA
    having = {name for name, task in tasks.items() if isinstance(task, capability)}
    assert having == HAS[capability]


def test_models_and_data_name_themselves_for_logs_and_titles():
    models = _models()
    assert models["classifier"].display_name() == "BiLSTM, 4 units"
    assert models["language"].display_name() == "LSTM, 8 units"
    assert _datamodules()["classification"].display_name() == "JapaneseVowels"


def _batch(rows: int = 5) -> Batch:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([4, 2, 3, 4, 1][:rows])
    return Batch(
        x=torch.randn(rows, 4, 3, generator=generator),
        lengths=lengths,
        y=torch.randn(rows, 2, 1, generator=generator),
        scaling=TargetScaling(
            torch.randn(rows, 1, generator=generator),
            torch.rand(rows, 1, generator=generator) + 0.5,
        ),
    )


@pytest.mark.parametrize("name", ["classifier", "regressor", "forecaster"])
def test_forward_output_turns_the_averaged_output_back_into_forward_s(name):
    """An ensemble of one: its average is the model's own ``predict_step`` output, and
    ``forward_output`` of it must score as ``forward`` does."""
    model, batch = _models()[name].eval(), _batch()
    with torch.no_grad():
        average = model.predict_step(batch, 0)[model.averaged_output]
        forward = model(batch.x, batch.lengths)
    replayed = model.forward_output(average, batch)
    if name == "classifier":  # logits up to a constant per row: the same softmax
        torch.testing.assert_close(replayed.softmax(-1), forward.softmax(-1))
    else:
        torch.testing.assert_close(replayed, forward)


# --- callbacks: the capability counts, not the class -----------------------------------------
class WordModel(L.LightningModule):
    """A test-only TextGenerator: not a LanguageModel, always 'b'."""

    def generate(self, prompt, length, temperature=1.0, top_k=0, generator=None):
        return [2] * length


class WordData:
    """A test-only TextData."""

    vocab = Vocabulary(list("ab"))

    def opening(self, part: str, characters: int = 40) -> str:
        return "a"


class CountingModel(L.LightningModule):
    """A test-only ConfusionCounts: two classes, three correct and one confused."""

    def __init__(self) -> None:
        super().__init__()
        self.class_names = ["yes", "no"]

    def test_confusion_matrix(self):
        return torch.tensor([[2, 1], [0, 1]])


def _trainer(tmp_path: Path, datamodule: Any) -> Any:
    """What the callbacks read of a trainer: rank, stage, step, loggers and data."""
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        global_step=3,
        loggers=[logger],
        datamodule=datamodule,
    )


def _tags(trainer: Any) -> dict[str, list[str]]:
    trainer.loggers[0].experiment.flush()
    events = EventAccumulator(trainer.loggers[0].log_dir)
    events.Reload()
    return events.Tags()


def test_text_sample_is_logged_for_any_text_generator_and_for_nothing_else(tmp_path):
    trainer = _trainer(tmp_path / "words", WordData())
    TextSample(length=3).on_validation_epoch_end(trainer, WordModel())
    assert _tags(trainer)["tensors"] == ["sample/text_summary"]

    other = _trainer(tmp_path / "other", WordData())
    TextSample(length=3).on_validation_epoch_end(other, CountingModel())
    assert _tags(other)["tensors"] == []


def test_confusion_figure_is_drawn_for_any_model_that_counts_and_for_nothing_else(tmp_path):
    trainer = _trainer(tmp_path / "counts", None)
    ConfusionMatrixFigure().on_test_epoch_end(trainer, CountingModel())
    assert _tags(trainer)["images"] == ["test/confusion_matrix"]

    other = _trainer(tmp_path / "other", None)
    ConfusionMatrixFigure().on_test_epoch_end(other, WordModel())
    assert _tags(other)["images"] == []


# --- commands refuse, in one line, a checkpoint without the capability -----------------------
@pytest.fixture(scope="module")
def tagger_checkpoint(tmp_path_factory) -> Path:
    """A one-epoch copy-memory tagger: neither averageable nor a text generator."""
    out = tmp_path_factory.mktemp("tagger")
    overrides = [
        "experiment=copy",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "data.length=4",
        "data.train_size=16",
        "data.val_size=8",
        "data.test_size=8",
        "data.batch_size=8",
        "model.encoder.hidden_size=4",
        "callbacks.learning_rate_monitor=null",
        "logger=none",
        "test=false",
    ]
    train(compose_config("train", overrides, out))
    return out


def test_ensemble_refuses_a_model_it_cannot_average(tagger_checkpoint, tmp_path):
    cfg = compose_config(
        "ensemble", [f"runs=[{tagger_checkpoint}]", "trainer.accelerator=cpu"], tmp_path
    )
    with pytest.raises(DataError) as refused:
        ensemble(cfg)
    assert str(refused.value) == (
        f"{tagger_checkpoint / 'checkpoints' / 'best.ckpt'} is a SequenceTagger's; an ensemble "
        "averages classifiers, sequence regressors or forecasters"
    )
    assert not (tmp_path / "metrics.json").exists()


def test_generate_refuses_a_model_that_generates_no_text(tagger_checkpoint, tmp_path):
    best = tagger_checkpoint / "checkpoints" / "best.ckpt"
    with pytest.raises(DataError) as refused:
        generate(compose_config("generate", [f"ckpt_path={best}"], tmp_path))
    assert str(refused.value) == (
        f"checkpoint {best} holds a SequenceTagger, not a language model; generate text with a "
        "checkpoint of experiment=charlm"
    )

"""Checkpoints written by earlier releases still load, evaluate and resume.

``fixtures/checkpoint_format1.ckpt`` (17 KB) was written by rnnlab 0.1.0 before the data state
was stored once: it has no format key and holds the DataModule's state twice, under
``rnnlab_data_state`` and under Lightning's key, the class's name. It is the best checkpoint of

    rnnlab.train trainer.accelerator=cpu trainer.max_epochs=1 model.encoder.hidden_size=2
        model.encoder.bidirectional=false callbacks.learning_rate_monitor=null logger=none
        test=false

and its test metrics below are what ``rnnlab.eval`` of that release printed for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rnnlab.checkpoint import DATA_KEY, FORMAT, FORMAT_KEY, load_checkpoint, restore
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.eval import evaluate
from rnnlab.train import train
from rnnlab.utils.errors import DataError
from tests.conftest import compose_config

FORMAT1 = Path(__file__).parent / "fixtures" / "checkpoint_format1.ckpt"
FORMAT1_OVERRIDES = [
    "trainer.accelerator=cpu",
    "model.encoder.hidden_size=2",
    "model.encoder.bidirectional=false",
    "callbacks.learning_rate_monitor=null",
    "logger=none",
    "test=false",
]
FORMAT1_TEST_METRICS = {"test/loss": 2.3672268390655518, "test/acc": 0.10000000149011612}


def test_a_format1_checkpoint_evaluates_as_its_release_did(tmp_path):
    cfg = compose_config("eval", [f"ckpt_path={FORMAT1}", "logger=none"], tmp_path)
    metrics = evaluate(cfg)
    for key, value in FORMAT1_TEST_METRICS.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize("kept", ["rnnlab_data_state", "ClassificationDataModule"])
def test_a_format1_data_state_loads_from_either_copy(tmp_path, kept):
    checkpoint = load_checkpoint(FORMAT1)
    expected = checkpoint["rnnlab_data_state"]
    for key in {"rnnlab_data_state", "ClassificationDataModule"} - {kept}:
        del checkpoint[key]
    path = tmp_path / "one_copy.ckpt"
    torch.save(checkpoint, path)
    _, datamodule, _ = restore(load_checkpoint(path), path)
    assert datamodule.classes == expected["classes"] == [str(i) for i in range(1, 10)]
    state = datamodule.state_dict()["normalizer"]
    for key, value in expected["normalizer"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)


def test_a_format1_checkpoint_resumes(tmp_path):
    ckpt = tmp_path / "old" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(FORMAT1, ckpt)
    overrides = [*FORMAT1_OVERRIDES, "trainer.max_epochs=2", f"ckpt_path={ckpt}"]
    metrics = train(compose_config("train", overrides, tmp_path / "resumed"))
    assert metrics["epochs"] == 2


@pytest.fixture(scope="module")
def format2(tmp_path_factory) -> Path:
    """A run of this release, with the overrides of the format-1 fixture."""
    out = tmp_path_factory.mktemp("format2")
    train(compose_config("train", [*FORMAT1_OVERRIDES, "trainer.max_epochs=1"], out))
    return out / "checkpoints" / "best.ckpt"


def test_this_release_stores_its_format_and_the_data_state_once(format2):
    checkpoint = load_checkpoint(format2)
    assert checkpoint[FORMAT_KEY] == FORMAT == 2
    assert checkpoint[DATA_KEY]["classes"] == [str(i) for i in range(1, 10)]
    assert "ClassificationDataModule" not in checkpoint


def test_a_resumed_run_gets_the_stored_data_state_back(format2, tmp_path, monkeypatch):
    loaded: list[dict] = []
    original = ClassificationDataModule.load_state_dict

    def spy(self, state: dict) -> None:
        loaded.append(state)
        original(self, state)

    monkeypatch.setattr(ClassificationDataModule, "load_state_dict", spy)
    overrides = [*FORMAT1_OVERRIDES, "trainer.max_epochs=2", f"ckpt_path={format2}"]
    assert train(compose_config("train", overrides, tmp_path))["epochs"] == 2
    assert [state["classes"] for state in loaded] == [[str(i) for i in range(1, 10)]]


@pytest.mark.parametrize("version", [3, "2", None])
def test_a_checkpoint_of_another_format_is_refused_in_one_line(format2, tmp_path, version):
    checkpoint = load_checkpoint(format2)
    checkpoint[FORMAT_KEY] = version
    path = tmp_path / "future.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(DataError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"checkpoint {path} is in format {version!r}; this rnnlab reads formats 1 to 2: load it "
        "with the rnnlab release that wrote it, or a newer one"
    )

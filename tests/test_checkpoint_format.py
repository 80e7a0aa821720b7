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

from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.eval import evaluate
from rnnlab.train import train
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

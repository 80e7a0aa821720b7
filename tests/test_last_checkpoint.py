"""``last.ckpt`` holds the last finished training epoch, also after the monitored metric stopped
improving (Lightning 2.6 alone rewrites it only in epochs that write a best checkpoint), and
the class keeps Lightning's name, under which a checkpoint files the callback's state."""

from __future__ import annotations

from rnnlab.callbacks.checkpoint import ModelCheckpoint
from rnnlab.checkpoint import load_checkpoint
from rnnlab.train import train
from tests.conftest import FAST, compose_config

EPOCHS = 4


def test_last_ckpt_is_the_last_epoch_when_the_best_is_the_first(tmp_path):
    # a learning rate of 0 leaves the weights, and so val/loss, as they were: only the first
    # epoch improves on "no score yet", so best.ckpt is epoch 0 for certain
    overrides = [
        *FAST,
        f"trainer.max_epochs={EPOCHS}",
        "model.optimizer.lr=0.0",
        "model.head_dropout=0.0",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "callbacks.early_stopping=null",
        "model.scheduler=null",
    ]
    train(compose_config("train", overrides, tmp_path))
    best = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert best["epoch"] == 0
    assert last["epoch"] == EPOCHS - 1
    assert last["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == EPOCHS


def test_the_callback_files_its_state_under_lightnings_name():
    callback = ModelCheckpoint(dirpath="x", monitor="val/loss")
    assert callback.state_key.startswith("ModelCheckpoint{")

"""``trainer.max_steps`` ends a run within an epoch: the run validates where it stops, so its
checkpoints, early stopping and test all see the monitored metric."""

from __future__ import annotations

import pytest

from rnnlab.train import train
from tests.conftest import FAST, compose_config
from tests.test_charlm import LM_FAST, PROSE, _text_file


@pytest.mark.parametrize("task", ["classification", "language model"])
def test_a_run_shorter_than_an_epoch_validates_where_it_stops(tmp_path, task):
    if task == "classification":
        overrides = [*FAST, "data.batch_size=8"]  # 270 training sequences: 34 steps an epoch
    else:  # manual optimisation (truncated BPTT) counts its own steps
        overrides = [*LM_FAST, f"data.file={_text_file(tmp_path, PROSE * 40)}"]
    cfg = compose_config("train", [*overrides, "trainer.max_steps=3"], tmp_path / "run")
    metrics = train(cfg)
    assert f"{cfg.monitor}_best" in metrics  # validated at step 3: the monitored metric exists
    assert any(key.startswith("test/") for key in metrics)  # and the best checkpoint was tested
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()

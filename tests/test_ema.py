"""``callbacks=ema``: an exponential moving average of the weights that validation, checkpoints
and the test use, restored exactly when a run resumes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from rnnlab.callbacks.averaging import EMAWeights
from rnnlab.checkpoint import METRICS_KEY, load_checkpoint, plan_resume, restore
from rnnlab.eval import evaluate
from rnnlab.train import build_data_and_model, build_trainer, train
from rnnlab.utils.errors import ConfigError
from tests.conftest import FAST, compose_config

SHORT = [
    *FAST,
    "callbacks=ema",
    "callbacks.learning_rate_monitor=null",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "model.encoder.hidden_size=8",
    "logger=none",
    "trainer.enable_progress_bar=false",
]


class RecordWeights(L.Callback):
    """The raw weights after every optimiser step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def _fit(out: Path, overrides: list[str]) -> RecordWeights:
    cfg = compose_config("train", [*SHORT, *overrides], out)
    datamodule, model = build_data_and_model(cfg)
    recorder = RecordWeights()
    build_trainer(cfg, recorder).fit(model, datamodule=datamodule)
    return recorder


def _last(out: Path) -> dict:
    return load_checkpoint(out / "checkpoints" / "last.ckpt")  # the safe loader accepts it


def test_with_decay_0_the_average_is_the_weights(tmp_path):
    recorded = _fit(tmp_path, ["trainer.max_epochs=1", "callbacks.weight_averaging.decay=0"])
    checkpoint = _last(tmp_path)
    assert checkpoint["state_dict"].keys() == recorded.steps[-1].keys()
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(value, recorded.steps[-1][key]), key
        assert torch.equal(value, checkpoint["current_model_state"][key]), key


def test_the_average_is_the_ema_of_the_steps_and_validation_uses_it(tmp_path):
    decay = 0.6
    recorded = _fit(tmp_path, ["trainer.max_epochs=1", f"callbacks.weight_averaging.decay={decay}"])
    assert len(recorded.steps) == 3
    checkpoint = _last(tmp_path)
    for key, value in checkpoint["state_dict"].items():
        first, second, third = (step[key] for step in recorded.steps)
        expected = decay * (decay * first + (1 - decay) * second) + (1 - decay) * third
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
        assert torch.equal(checkpoint["current_model_state"][key], third), key  # raw weights
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 3
    assert not all(
        torch.equal(checkpoint["state_dict"][k], recorded.steps[-1][k]) for k in recorded.steps[-1]
    )

    # the checkpoint's weights are the ones validation scored
    _, datamodule, model = restore(checkpoint)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=2
    )
    again = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    assert again["val/loss"] == pytest.approx(checkpoint[METRICS_KEY]["val/loss"], rel=1e-6)


def _run(logs: Path, name: str, overrides: list[str]) -> dict[str, float]:
    cfg = compose_config(
        "train",
        [*SHORT, "callbacks.weight_averaging.decay=0.5", "model.head_dropout=0.3", *overrides],
        logs / name,
    )
    return train(cfg)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = _run(tmp_path, "straight", ["trainer.max_epochs=3"])
    # the run's final test scored the best checkpoint's average, as rnnlab.eval does
    best = tmp_path / "straight" / "checkpoints" / "best.ckpt"
    overrides = [f"ckpt_path={best}", "trainer.accelerator=cpu", "+trainer.limit_test_batches=2"]
    evaluated = evaluate(compose_config("eval", [*overrides, "logger=none"], tmp_path / "eval"))
    assert evaluated["test/loss"] == pytest.approx(straight["test/loss"], rel=1e-6)
    _run(tmp_path, "first", ["trainer.max_epochs=2"])
    first_last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = _run(tmp_path, "resumed", ["trainer.max_epochs=3", f"ckpt_path={first_last}"])
    compared = ["test/acc", "test/loss", "val/loss", "val/loss_best", "train/loss_epoch", "epochs"]
    assert {k: resumed[k] for k in compared} == {k: straight[k] for k in compared}
    ends = [_last(tmp_path / name) for name in ("straight", "resumed")]
    for part in ("state_dict", "current_model_state", "averaging_state"):
        for key, value in ends[0][part].items():
            assert torch.equal(value, ends[1][part][key]), (part, key)

    # resuming it without the averaging would continue from the average as if it were the weights
    plain = [
        *FAST,
        f"ckpt_path={first_last}",
        "model.encoder.hidden_size=8",
        "model.head_dropout=0.3",
    ]
    cfg = compose_config("train", plain, tmp_path / "plain")
    build_data_and_model(cfg)  # as train() does first: the model settings the data fills in
    with pytest.raises(
        ConfigError, match=r"callbacks\.weight_averaging is .* in the checkpoint but None now"
    ):
        plan_resume(cfg)


@pytest.mark.parametrize(("decay", "step"), [(1.5, None), (-0.1, None), (0.9, -1)])
def test_bad_settings_are_refused_in_one_line(decay, step):
    with pytest.raises(ConfigError, match=r"callbacks\.weight_averaging\.(decay|update_starting)"):
        EMAWeights(decay=decay, update_starting_at_step=step)

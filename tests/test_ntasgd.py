"""NT-ASGD's averaging (rnnlab.callbacks.ntasgd): AWD-LSTM's non-monotone trigger; nothing
averaged or swapped before it; after it, the equal average of the weights after every step,
used by validation, saved as the checkpoint's weights and restored on resume."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.callbacks.ntasgd import NonMonotoneAveraging
from rnnlab.utils.errors import ConfigError


def _observed(values: list[float], nonmono: int = 2, mode: str = "min") -> int | None:
    """The index of the validation that starts the averaging, if any."""
    averaging = NonMonotoneAveraging("val/x", mode, nonmono)
    started = [i for i, v in enumerate(values) if averaging.observe(v, step=i)]
    return started[0] if started else None


def test_averaging_starts_at_the_first_value_worse_than_the_best_before_the_last_nonmono():
    # at 4.5: the best of all but the last two earlier values (5, 4, 3) is 3, and 4.5 is worse
    assert _observed([5, 4, 3, 3.5, 3.2, 4.5, 1.0]) == 5
    assert _observed([5, 4, 3, 3.5, 3.2, 2.9]) is None  # never worse than 5, 4, then 3
    assert _observed([5, 6, 7]) is None  # too few validations to compare yet
    assert _observed([5, 6, 7, 8], nonmono=1) == 2  # 7 is worse than 5
    assert _observed([1, 2, 3, 2.5, 1.5, 0.5], mode="max") == 4  # 1.5 below 2, the best of 1, 2
    assert _observed([5, 4, 3, math.nan, 6, 7]) == 4  # a NaN neither starts it nor is a best


def test_once_started_it_stays_started():
    averaging = NonMonotoneAveraging("val/x", "min", 1)
    started = [averaging.observe(v, i) for i, v in enumerate([3, 2, 4, 1, 5])]
    assert started == [False, False, True, False, False]  # True once: when it starts
    assert averaging.started_at_step == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"nonmono": 0}, "nonmono must be a whole number >= 1"), ({"mode": "up"}, "min or max")],
)
def test_bad_settings_are_refused_with_their_names(settings, message):
    with pytest.raises(ConfigError, match=f"callbacks.weight_averaging.*{message}"):
        NonMonotoneAveraging("val/x", **settings)


class _Scripted(L.LightningModule):
    """A linear model trained by SGD whose validation logs scripted values of val/x, and which
    records its weights after every step and the weights each validation saw."""

    def __init__(self, scripted: list[float]) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.scripted = scripted
        self.after_steps: list[torch.Tensor] = []
        self.validated: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.after_steps.append(self.layer.weight.detach().clone())

    def validation_step(self, batch, batch_idx):
        self.validated.append(self.layer.weight.detach().clone())

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.log("val/x", self.scripted[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _fit(tmp_path, scripted: list[float], epochs: int, ckpt_path=None):
    torch.manual_seed(0)
    model = _Scripted(scripted)
    averaging = NonMonotoneAveraging("val/x", "min", nonmono=1)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[averaging, checkpoints],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(model, _loader(), _loader(), ckpt_path=ckpt_path)
    return model, averaging


def test_before_the_trigger_nothing_is_averaged_after_it_validation_and_checkpoints_use_it(
    tmp_path,
):
    # (values float32 holds exactly) epoch 2's 3.5, worse than 3.0, the best of all but the
    # last one before it, starts it
    scripted = [3.0, 2.0, 3.5, 2.25, 2.125]
    model, averaging = _fit(tmp_path, scripted, epochs=5)
    steps = 3  # 12 samples in batches of 4
    assert averaging.history == scripted and averaging.started_at_step == 3 * steps
    # validations of epochs 0-2 saw the weights as trained; of epoch 3 on, the average of the
    # weights after every step from the trigger on
    for epoch in range(3):
        assert torch.equal(model.validated[epoch * 3], model.after_steps[(epoch + 1) * steps - 1])
    for epoch in (3, 4):
        averaged = torch.stack(model.after_steps[3 * steps : (epoch + 1) * steps]).mean(0)
        torch.testing.assert_close(model.validated[epoch * 3], averaged)
    final = torch.stack(model.after_steps[3 * steps :]).mean(0)
    torch.testing.assert_close(model.layer.weight.detach(), final)  # the average, after fit
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    torch.testing.assert_close(last["state_dict"]["layer.weight"], final)
    assert torch.equal(last["current_model_state"]["layer.weight"], model.after_steps[-1])


def test_a_run_resumed_after_the_trigger_ends_where_a_straight_run_ends(tmp_path):
    scripted = [3.0, 2.0, 3.5, 2.25, 2.125, 2.0625]
    straight, _ = _fit(tmp_path / "straight", scripted, epochs=6)
    _fit(tmp_path / "first", scripted, epochs=4)
    resumed, averaging = _fit(tmp_path / "again", scripted, 6, tmp_path / "first" / "last.ckpt")
    assert averaging.history == scripted and averaging.started_at_step == 9
    assert torch.equal(resumed.layer.weight, straight.layer.weight)


def test_a_checkpoint_saved_before_the_trigger_holds_the_weights_as_trained(tmp_path):
    model, averaging = _fit(tmp_path, [3.0, 2.0], epochs=2)
    assert averaging.started_at_step is None
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(last["state_dict"]["layer.weight"], model.after_steps[-1])
    assert "current_model_state" not in last


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"latest_update_step": 0, "history": "x", "started_at_step": None}, "history"),
        ({"latest_update_step": 0, "history": [1.0, True], "started_at_step": None}, "history"),
        ({"latest_update_step": 0, "history": [], "started_at_step": -3}, "started_at_step"),
        ({"latest_update_step": 0, "history": []}, None),
    ],
)
def test_a_resumed_checkpoint_with_a_tampered_averaging_state_is_refused(state, field):
    from rnnlab.checkpoint.stored import Malformed
    from rnnlab.checkpoint.training_state import _check_callbacks

    with pytest.raises(Malformed, match=r"callbacks\.NonMonotoneAveraging") as refused:
        _check_callbacks({"NonMonotoneAveraging": state}, "run.ckpt")
    assert (field or "lacks 'started_at_step'") in str(refused.value)
    _check_callbacks(
        {"NonMonotoneAveraging": {**state, "history": [2.5], "started_at_step": 3}}, "x"
    )


def test_the_optimizer_option_brings_sgd_and_its_averaging_and_refuses_ema_beside_it(tmp_path):
    from hydra.utils import instantiate

    from rnnlab.run.checks import check_training
    from tests.conftest import compose_config

    cfg = compose_config("train", ["experiment=charlm", "model/optimizer=ntasgd"], tmp_path)
    check_training(cfg)
    assert cfg.model.optimizer._target_ == "torch.optim.SGD"
    averaging = instantiate(cfg.callbacks.weight_averaging)
    assert isinstance(averaging, NonMonotoneAveraging)
    assert (averaging.monitor, averaging.mode, averaging.nonmono) == ("val/bpc", "min", 5)
    both = compose_config(
        "train", ["experiment=charlm", "model/optimizer=ntasgd", "callbacks=ema"], tmp_path
    )
    with pytest.raises(ConfigError, match=r"averages the weights itself.*drop callbacks=ema"):
        check_training(both)

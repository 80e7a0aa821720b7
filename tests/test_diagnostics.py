"""Gradient-flow diagnostics: what they log, and that training is the same with them on."""

from __future__ import annotations

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.batch import Batch
from rnnlab.callbacks.diagnostics import (
    GradientFlowDiagnostics,
    first_over_last,
    state_gradient_norms,
)
from rnnlab.checkpoint import load_checkpoint
from rnnlab.train import build_data_and_model, train
from rnnlab.utils.errors import ConfigError
from tests.conftest import compose_config

# dropout between layers and in the head: the diagnostic pass must not shift any random draw
RUN = [
    "experiment=adding",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "data.length=10",
    "data.train_size=96",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=16",
    "model.encoder.hidden_size=8",
    "model.encoder.num_layers=2",
    "model.encoder.dropout=0.3",
    "model.encoder.bidirectional=true",
    "model.head_dropout=0.3",
    # every step clipped, so the clipping share has a known value
    "trainer.gradient_clip_val=1e-6",
    "callbacks.learning_rate_monitor=null",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, extra in (
        ("plain", []),
        (
            "diagnosed",
            [
                "callbacks=diagnostics",
                "callbacks.diagnostics.every_n_steps=2",
                "callbacks.diagnostics.figure_every_n_steps=4",
            ],
        ),
    ):
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, train(compose_config("train", [*RUN, *extra], folder)))
    return out


def test_training_is_bit_identical_with_diagnostics_on(runs):
    (plain_dir, plain), (diag_dir, diagnosed) = runs["plain"], runs["diagnosed"]
    assert not any(k.startswith("diagnostics") for k in diagnosed)  # not a run metric
    timing = {k for k in plain if k.startswith("time/")}
    assert {k: plain[k] for k in plain.keys() - timing} == {
        k: diagnosed[k] for k in diagnosed.keys() - timing
    }
    weights = [
        load_checkpoint(folder / "checkpoints" / "last.ckpt")["state_dict"]
        for folder in (plain_dir, diag_dir)
    ]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_tensorboard_holds_the_diagnostics(runs):
    folder, _ = runs["diagnosed"]
    events = EventAccumulator(
        str(folder / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "histograms": 0}
    )
    events.Reload()
    tags = events.Tags()
    steps = 2 * 96 // 16  # two epochs of six batches
    for layer in ("l0", "l0_reverse", "l1", "l1_reverse"):
        ratios = events.Scalars(f"diagnostics/grad_h_first_over_last/{layer}")
        assert [s.step for s in ratios] == list(range(0, steps, 2))
        assert all(math.isfinite(s.value) and s.value > 0 for s in ratios)
        sigma = events.Scalars(f"diagnostics/sigma_max/weight_hh_{layer}")
        assert all(s.value > 0 for s in sigma)
    # clip limit 1e-6: every step since the last log was clipped
    assert {s.value for s in events.Scalars("diagnostics/clip_fraction")} == {1.0}
    assert all(s.value > 1e-6 for s in events.Scalars("diagnostics/grad_norm"))
    assert "diagnostics/grad_h" in tags["images"]
    # every 4 steps, and the last pass (step 10) at the end
    assert [i.step for i in events.Images("diagnostics/grad_h")] == [0, 4, 8, 10]
    assert {"weights/encoder.rnn.weight_hh_l0", "gradients/head.1.weight"} <= set(
        tags["histograms"]
    )


def test_state_gradients_leave_weights_gradients_and_generators_alone(tmp_path):
    cfg = compose_config("train", RUN, tmp_path)
    datamodule, model = build_data_and_model(cfg)
    model.train()
    batch: Batch = next(iter(datamodule.train_dataloader()))
    batch.lengths = torch.tensor([10, 3, 7, 1] * 4)  # uneven: padding steps get no norm
    before = torch.get_rng_state()
    norms = state_gradient_norms(model, model.encoder, batch)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())
    assert model.encoder.recorded is None and model.encoder.impl == "auto"
    assert set(norms) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    for norm in norms.values():
        valid = torch.arange(10)[None, :] < batch.lengths[:, None]
        assert torch.isnan(norm[~valid]).all() and (norm[valid] >= 0).all()
        assert first_over_last(norm, batch.lengths) > 0


def test_diagnostics_refuse_a_bad_interval():
    with pytest.raises(ConfigError, match="every_n_steps must be >= 1 and divide"):
        GradientFlowDiagnostics(every_n_steps=0)
    with pytest.raises(ConfigError, match="got 50 and 120"):
        GradientFlowDiagnostics(every_n_steps=50, figure_every_n_steps=120)

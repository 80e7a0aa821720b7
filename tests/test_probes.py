"""The long-range probes: adding problem and copy memory, generated from the seed."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.data.probes import AddingDataModule, CopyDataModule
from rnnlab.eval import evaluate
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError
from tests.conftest import compose_config

# scripts/ is not a package: load the figure script from its file
_SPEC = importlib.util.spec_from_file_location(
    "grad_flow_figure", Path(__file__).resolve().parents[1] / "scripts" / "grad_flow_figure.py"
)
assert _SPEC is not None and _SPEC.loader is not None
grad_flow_figure = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(grad_flow_figure)

SMALL = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "data.length=12",
    "data.train_size=64",
    "data.val_size=32",
    "data.test_size=40",
    "data.batch_size=16",
    "model.encoder.hidden_size=8",
    "callbacks.learning_rate_monitor=null",
    "logger=none",
]


def _rows(module: AddingDataModule | CopyDataModule) -> dict[str, set[bytes]]:
    return {
        split: {x.numpy().tobytes() for x in module.splits[split].tensors[0]}
        for split in ("train", "val", "test")
    }


def test_adding_problem_is_what_le_et_al_describe():
    data = AddingDataModule(length=30, train_size=4000, val_size=10, test_size=10, seed=1)
    data.setup("fit")
    x, y = data.splits["train"].tensors
    assert x.shape == (4000, 30, 2) and y.shape == (4000, 1, 1)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    # exactly one marker in each half, and the target is the sum of the two marked values
    assert (markers[:, :15].sum(dim=1) == 1).all() and (markers[:, 15:].sum(dim=1) == 1).all()
    torch.testing.assert_close((values * markers).sum(dim=1), y[:, 0, 0])
    # predicting 1 scores Var(U + U') = 1/6
    assert F.mse_loss(torch.ones_like(y), y).item() == pytest.approx(1 / 6, abs=0.01)


def test_copy_memory_is_what_arjovsky_et_al_describe():
    data = CopyDataModule(length=7, train_size=50, val_size=5, test_size=5, seed=2)
    data.setup("fit")
    x, y = data.splits["train"].tensors
    assert x.shape == (50, 27, 10) and y.shape == (50, 27)
    symbols = x.argmax(dim=-1)
    assert ((symbols[:, :10] >= 1) & (symbols[:, :10] <= 8)).all()
    assert (symbols[:, 10:16] == 0).all() and (symbols[:, 16] == 9).all()
    assert (symbols[:, 17:] == 0).all()
    assert (y[:, :17] == 0).all()
    assert torch.equal(y[:, 17:], symbols[:, :10])  # recalled after the delimiter


@pytest.mark.parametrize("length", [2, 10, 100])
def test_memoryless_copy_baseline_scores_ten_log_eight_over_t_plus_20(length: int):
    data = CopyDataModule(length=length, train_size=8, val_size=1, test_size=1, seed=0)
    data.setup("fit")
    batch = data.collate([data.splits["train"][i] for i in range(8)])
    assert batch.y is not None
    scored = F.cross_entropy(batch.baselines["baseline"].flatten(0, 1), batch.y.flatten())
    expected = 10 * math.log(8) / (length + 20)
    assert scored.item() == pytest.approx(expected, rel=1e-6)
    assert data.baseline_loss() == pytest.approx(expected)


@pytest.mark.parametrize("module", [AddingDataModule, CopyDataModule])
def test_splits_are_disjoint_and_follow_the_seed(module: type):
    sizes = {"length": 6, "train_size": 300, "val_size": 50, "test_size": 50}
    first, again, other = (module(seed=s, **sizes) for s in (3, 3, 4))
    for data in (first, again, other):
        data.setup("fit")
    rows = _rows(first)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not rows[a] & rows[b], (a, b)
    assert rows == _rows(again)
    assert rows["test"] != _rows(other)["test"]
    assert [len(first.splits[s]) for s in ("train", "val", "test")] == [300, 50, 50]


@pytest.mark.parametrize("module", [AddingDataModule, CopyDataModule])
def test_a_probe_has_no_prediction_file_format_and_says_so_in_one_line(module: type):
    data = module(length=4, train_size=2, val_size=2, test_size=2)
    for refused in (lambda: data.setup_predict("input.csv"), lambda: data.setup("predict")):
        with pytest.raises(ConfigError) as info:
            refused()
        message = str(info.value)
        assert message.startswith("this task has no prediction file format; a probe's data")
        assert "rnnlab.eval" in message and "\n" not in message


@pytest.mark.parametrize("module", [AddingDataModule, CopyDataModule])
@pytest.mark.parametrize("length", [1, 0, -5])
def test_length_below_two_is_refused(module: type, length: int):
    with pytest.raises(ConfigError, match=f"data.length must be >= 2 .*got {length}"):
        module(length=length)


def test_adding_run_logs_mse_beside_the_predict_one_baseline(tmp_path, capsys):
    cfg = compose_config("train", ["experiment=adding", *SMALL], tmp_path)
    metrics = train(cfg)
    assert metrics["test/mse"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    # the baseline is scored on the very same test targets as the model
    data = AddingDataModule(length=12, train_size=64, val_size=32, test_size=40, seed=cfg.seed)
    data.setup("test")
    targets = data.splits["test"].tensors[1]
    expected = F.mse_loss(torch.ones_like(targets), targets).item()
    assert metrics["test/mse_baseline"] == pytest.approx(expected, rel=1e-5)
    # the README's gradient-flow figure, drawn from this run's checkpoint
    figure = tmp_path / "figure.png"
    grad_flow_figure.main(
        [str(tmp_path / "checkpoints" / "best.ckpt"), "--out", str(figure), "--sequences", "8"]
    )
    assert figure.read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "| lstm, init |" in table and "| lstm, trained |" in table


def test_copy_run_logs_loss_beside_the_memoryless_baseline_and_evals_again(tmp_path):
    cfg = compose_config("train", ["experiment=copy", *SMALL], tmp_path / "run")
    metrics = train(cfg)
    assert metrics["test/loss_baseline"] == pytest.approx(10 * math.log(8) / 32, rel=1e-5)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and math.isfinite(metrics["test/loss"])
    # the checkpoint names only registered classes and rebuilds the same test set from its seed
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    _, datamodule, model = restore(load_checkpoint(best))
    assert isinstance(datamodule, CopyDataModule) and type(model).__name__ == "SequenceTagger"
    again = evaluate(
        compose_config("eval", [f"ckpt_path={best}", "trainer.accelerator=cpu"], tmp_path / "ev")
    )
    for key in ("test/loss", "test/acc", "test/loss_baseline"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key

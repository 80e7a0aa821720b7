"""A short real run through ``train(cfg)``: metrics, checkpoints, eval agreement, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from rnnlab.callbacks.divergence import DivergenceError
from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.eval import evaluate
from rnnlab.train import train
from rnnlab.utils.errors import DataError
from tests.conftest import FAST, compose_config, write_ts


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config("train", [*FAST, "data.normalize=minmax", "seed=7"], out)
    return out, train(cfg)


def test_train_returns_and_writes_final_metrics(run):
    out, metrics = run
    written = json.loads((out / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    for key in ("test/acc", "test/f1", "test/precision", "test/recall", "val/loss_best"):
        assert 0.0 <= metrics[key] < 10.0, key
    assert metrics["test/acc"] > 1 / 9  # three tiny epochs already beat chance on 9 speakers
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_checkpoint_loads_weights_only_with_config_and_normaliser(run):
    out, _ = run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["rnnlab_config"]["data"]["normalize"] == "minmax"
    state = checkpoint["rnnlab_data_state"]
    assert "ClassificationDataModule" not in checkpoint  # stored once, not also Lightning's copy
    assert state["normalizer"]["method"] == "minmax"
    assert state["normalizer"]["shift"].shape == (12,)
    assert state["classes"] == [str(i) for i in range(1, 10)]


def test_eval_of_best_checkpoint_reproduces_test_metrics(run, tmp_path):
    out, metrics = run
    cfg = compose_config(
        "eval",
        [f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", "trainer.accelerator=cpu"],
        tmp_path,
    )
    again = evaluate(cfg)
    for key in ("test/acc", "test/f1", "test/loss"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key
    assert json.loads((tmp_path / "metrics.json").read_text())["test/acc"] == again["test/acc"]


def test_tensorboard_holds_scalars_and_confusion_matrix(run):
    out, _ = run
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_step", "val/loss", "val/acc", "test/acc", "test/f1"} <= scalars
    assert len(events.Scalars("val/loss")) == 3  # one per epoch
    assert "test/confusion_matrix" in events.Tags()["images"]
    image = events.Images("test/confusion_matrix")[-1]
    assert image.width > 100 and image.encoded_image_string[:4] == b"\x89PNG"


def test_logged_losses_are_exact_epoch_means_and_step_losses_every_n_steps(run):
    out, metrics = run
    _, datamodule, model = restore(load_checkpoint(out / "checkpoints" / "best.ckpt"))
    datamodule.setup("test")
    model.eval()
    with torch.inference_mode():
        batches = list(datamodule.test_dataloader())
        logits = torch.cat([model(b.x, b.lengths) for b in batches])
        labels = torch.cat([b.y for b in batches])
    assert len(batches[-1]) != len(batches[0])  # a short last batch: weights matter
    # the whole test set's mean, not the mean of per-batch means
    assert metrics["test/loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), abs=1e-5)

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss_step")]
    per_epoch = len(datamodule.train_dataloader())
    expected = [s for s in range(1, 3 * per_epoch + 1) if s % 5 == 0]  # log_every_n_steps=5
    assert len(steps) == len(expected)


def test_tensorboard_hparams_hold_settings_and_final_metrics(run):
    out, metrics = run
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["data.normalize"].string_value == "minmax"
    assert hparams["model.encoder.hidden_size"].number_value == 16
    assert hparams["seed"].number_value == 7
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    shown = {m.name.tag for m in experiment.metric_infos}
    assert {"test/acc", "test/f1", "val/loss_best"} <= shown
    # every metric column has a scalar to read, the objective included
    assert shown <= set(events.Tags()["scalars"])
    assert events.Scalars("val/loss_best")[-1].value == pytest.approx(metrics["val/loss_best"])


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    cfg = compose_config("train", [*FAST, "trainer.precision=bf16-mixed", "logger=none"], tmp_path)
    metrics = train(cfg)
    assert 0.0 < metrics["test/loss"] < 10.0 and metrics["test/acc"] > 1 / 9


def test_eval_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot load checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


class Payload:
    """Anything but tensors and plain types: unpickling it would run a class's code."""


def test_eval_refuses_a_checkpoint_that_needs_unpickling_objects(run, tmp_path):
    out, _ = run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["extra"] = Payload()
    torch.save(checkpoint, tmp_path / "pickled.ckpt")
    with pytest.raises(DataError, match=r"cannot load checkpoint .*pickled\.ckpt safely"):
        load_checkpoint(tmp_path / "pickled.ckpt")


def test_restore_refuses_a_stored_config_naming_another_callable(run, tmp_path):
    out, _ = run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["rnnlab_config"]["model"]["optimizer"]["_target_"] = "os.system"
    torch.save(checkpoint, tmp_path / "tampered.ckpt")
    cfg = compose_config("eval", [f"ckpt_path={tmp_path / 'tampered.ckpt'}"], tmp_path / "e")
    with pytest.raises(DataError, match=r"model\.optimizer\._target_ is 'os\.system', not one of"):
        evaluate(cfg)


class PoisonFromEpoch(L.Callback):
    """From ``epoch`` on, training inputs carry inf noise, so the loss turns NaN."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.epoch:
            pl_module.input_noise = float("inf")


def test_divergence_stops_at_the_first_nan_and_keeps_the_last_good_checkpoint(tmp_path):
    overrides = [
        *FAST,
        "+callbacks.poison._target_=tests.test_train.PoisonFromEpoch",
        "+callbacks.poison.epoch=2",
        "logger=none",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(DivergenceError) as caught:
        train(cfg)
    message = str(caught.value)
    assert message.startswith("training loss is nan at epoch 2, step 28; lower model.optimizer.lr")
    assert message.endswith(f"last good checkpoint: {tmp_path / 'checkpoints' / 'last.ckpt'}")
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in last["state_dict"].values())


def test_fast_dev_run_trains_and_tests_without_checkpoints(tmp_path):
    cfg = compose_config("train", ["debug=fdr", "model.encoder.hidden_size=8"], tmp_path)
    metrics = train(cfg)
    assert "test/acc" in metrics
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists()  # tested the weights in memory


def test_own_ts_files_train_and_evaluate_from_another_directory(tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)

    def rows(n: int) -> list[str]:  # class b rises, class a falls; lengths 3..8
        out = []
        for i in range(n):
            length = 3 + i % 6
            slope = 1.0 if i % 2 else -1.0
            noise = torch.randn(length, generator=generator) * 0.1
            values = slope * torch.arange(length) + noise
            out.append(",".join(f"{v:.3f}" for v in values) + (":b" if i % 2 else ":a"))
        return out

    data = tmp_path / "data"
    data.mkdir()
    write_ts(data / "train.ts", rows(40))
    write_ts(data / "test.ts", rows(20))
    monkeypatch.chdir(data)  # relative paths, as a user would type them
    out = tmp_path / "run"
    cfg = compose_config(
        "train", [*FAST, "data.train_file=train.ts", "data.test_file=test.ts"], out
    )
    metrics = train(cfg)

    monkeypatch.chdir(tmp_path)  # elsewhere: the checkpoint must still find the files
    again = evaluate(
        compose_config("eval", [f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}"], tmp_path / "e")
    )
    assert again["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_stage_metrics_keep_one_object_per_stage_and_name_what_they_log():
    """Every model's per-stage metrics: '<stage>/<name>' for a metric, '<stage>/<key>' for a
    collection's members; one object per stage; reset once computed."""
    import pickle

    from torchmetrics import MeanMetric, MetricCollection, SumMetric

    from rnnlab.models.base import StageMetrics

    metrics = StageMetrics(
        lambda stage: {
            "mean": MeanMetric(),
            "group": MetricCollection({"total": SumMetric()}, postfix="_all"),
        },
        shown=lambda stage, name: stage != "train" and name == "mean",
    )
    assert metrics.metric("train", "mean") is not metrics.metric("val", "mean")
    for stage, value in (("train", 1.0), ("val", 3.0)):
        metrics.update(stage, "mean", torch.tensor([value, value + 2]))
        metrics.update(stage, "group", torch.tensor([value]))
    assert metrics.compute("val") == {"mean": {"val/mean": 4.0}, "group": {"val/total_all": 3.0}}
    assert metrics.compute("train") == {
        "mean": {"train/mean": 2.0},
        "group": {"train/total_all": 1.0},
    }
    assert not metrics.metric("val", "mean").update_called  # reset
    assert metrics.shown == {("val", "mean"), ("test", "mean")}
    assert metrics.compute("predict") == {}  # a stage it does not score
    pickle.dumps(metrics)  # DDP spawn pickles the model: nothing of make or shown is kept

"""What the commands print and log: a line per epoch (not a progress bar) when stdout is not a
terminal, the monitored metric in the bar and the lines, the run's own lines in its log file,
where the outputs went, and none of the libraries' known noise."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning as L
import pytest
from omegaconf import OmegaConf

from rnnlab.callbacks import progress
from rnnlab.train import build_data_and_model, build_trainer, train
from rnnlab.utils.config import config_dir
from rnnlab.utils.logs import SkipFileOnly
from rnnlab.utils.noise import quiet_known_noise
from tests.conftest import FAST, compose_config
from tests.test_charlm import LM_FAST, PROSE, _text_file
from tests.test_cli import _run

SHORT = [
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "model.encoder.hidden_size=8",
    "logger=none",
]
NOISE = (
    "GPU available: False",
    "TPU available: False",
    "HPU available",
    "LeafSpec",
    "💡 Tip",
    "srun",
)


def test_piped_run_prints_a_line_per_epoch_where_it_wrote_and_logs_them_to_train_log(tmp_path):
    result = _run(["-m", "rnnlab.train", *SHORT, "hydra.run.dir=run"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "\r" not in printed  # no progress bar redraws in a file or a pipe
    for noise in NOISE:
        assert noise not in printed, noise
    # one line per epoch, with the monitored metric (monitor: val/loss in conf/train.yaml)
    epochs = re.findall(
        r"^epoch (\d)/2  train/loss \S+  val/loss \S+  .*\d s$", result.stdout, re.M
    )
    assert epochs == ["1", "2"]
    # Lightning's test table once on the console (its file copy skips the console)
    assert result.stdout.count("test/acc") == 1
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"run directory: run \(checkpoints/, metrics\.json, train\.log\)", last)

    log = (tmp_path / "run" / "train.log").read_text()
    assert "][INFO] - train: SequenceClassifier (BiLSTM, 8 units) on JapaneseVowels, up to 2" in log
    assert re.search(r"\] - epoch 1/2  train/loss .*\n.*\] - epoch 2/2  train/loss", log)
    assert re.search(r"\] - test metrics of run/checkpoints/best\.ckpt:\n  test/acc  +0\.\d", log)
    assert log.rstrip().endswith("run directory: run (checkpoints/, metrics.json, train.log)")


@pytest.mark.slow
def test_optuna_search_ends_with_its_directory_and_the_summary_command(tmp_path):
    result = _run(
        ["-m", "rnnlab.train", "hparams_search=optuna", "hydra.sweeper.n_trials=1", *SHORT],
        tmp_path,
        env={"RNNLAB_LOG_DIR": "logs"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    found = re.fullmatch(
        r"sweep directory: (logs/optuna/multiruns/\S+); summarise it with: "
        r"python -m rnnlab\.summary (\S+)",
        last,
    )
    assert found and found[1] == found[2], last
    assert (tmp_path / found[1] / "0" / "metrics.json").is_file()
    assert f"run directory: {found[1]}/0 (" in result.stdout


def test_optuna_config_comment_summarises_where_the_search_writes():
    text = (Path(config_dir()) / "hparams_search" / "optuna.yaml").read_text()
    task_name = OmegaConf.create(text).task_name
    commands = re.findall(r"python -m rnnlab\.summary (\S+)", text)
    assert commands == [f"logs/{task_name}/multiruns/<date_time>"]


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        ([], "train: SequenceClassifier"),
        (["experiment=forecast"], "forecast: Forecaster"),
        (["experiment=adding"], "adding: SequenceRegressor"),
    ],
)
def test_every_task_logs_its_settings_epochs_test_metrics_and_run_directory(
    tmp_path, caplog, overrides, start
):
    caplog.set_level(logging.INFO)
    train(compose_config("train", [*FAST, *SHORT, *overrides], tmp_path))
    ours = [r for r in caplog.records if r.name.startswith("rnnlab")]
    lines = [r.getMessage() for r in ours]
    assert any(line.startswith(start) for line in lines), lines
    epochs = [line.split("  ")[0] for line in lines if line.startswith("epoch ")]
    assert epochs == ["epoch 1/2", "epoch 2/2"]
    table = [r for r in ours if r.getMessage().startswith("test metrics of ")]
    assert len(table) == 1 and "\n  test/loss  " in table[0].getMessage()
    assert not SkipFileOnly().filter(table[0])  # the console shows Lightning's table instead
    assert lines[-1].startswith(f"run directory: {tmp_path} (checkpoints/, metrics.json")


def test_progress_bar_shows_the_monitored_metric_the_model_left_off_it(tmp_path, monkeypatch):
    """The language model logs val/bpc (its monitor) without prog_bar=True."""
    monkeypatch.setattr(progress, "stdout_is_terminal", lambda: True)
    corpus = _text_file(tmp_path, PROSE * 30)
    overrides = [o for o in LM_FAST if "enable_progress_bar" not in o]
    cfg = compose_config("train", [*overrides, f"data.file={corpus}"], tmp_path / "run")
    assert cfg.monitor == "val/bpc"

    shown: list[dict] = []

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            bar = trainer.progress_bar_callback
            assert bar is not None
            shown.append(bar.get_metrics(trainer, pl_module))

    datamodule, model = build_data_and_model(cfg)
    trainer = build_trainer(cfg, Probe())
    assert isinstance(trainer.progress_bar_callback, progress.ThrottledProgressBar)
    trainer.fit(model, datamodule=datamodule)
    assert "val/bpc" not in trainer.progress_bar_metrics  # the model left it off
    assert shown and all("val/bpc" in metrics for metrics in shown)


def test_epoch_line_leaves_out_steps_and_the_values_of_a_validation_not_run():
    metrics = {"val/bpc": 2.5, "train/loss_step": 3.0, "val/loss": 1.25, "train/loss_epoch": 1.5}
    assert progress.epoch_line(2, 60, metrics, 12.06, validated=True) == (
        "epoch 3/60  train/loss 1.5  val/bpc 2.5  val/loss 1.25  12.1 s"
    )
    assert progress.epoch_line(2, -1, metrics, 1.0, validated=False) == (
        "epoch 3  train/loss 1.5  1.0 s"
    )


def test_noise_filter_drops_only_the_absent_accelerators_and_tips():
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        quiet_known_noise()
        for message in (
            "GPU available: False, used: False",
            "TPU available: False, using: 0 TPU cores",
            "HPU available: False, using: 0 HPUs",
            "💡 Tip: try a service",
            "GPU available: True (cuda), used: True",
            "TPU available: True, using: 8 TPU cores",
            "`Trainer.fit` stopped: `max_epochs=2` reached.",
        ):
            logger.info(message)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == [
        "GPU available: True (cuda), used: True",
        "TPU available: True, using: 8 TPU cores",
        "`Trainer.fit` stopped: `max_epochs=2` reached.",
    ]

"""Training entry point: ``python -m rnnlab.train`` (or ``rnnlab-train``) with Hydra overrides."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from rnnlab import slurm
from rnnlab.callbacks.progress import EpochLines, shows_live_bar
from rnnlab.callbacks.run_state import StartupTimer, StepSeed
from rnnlab.callbacks.step_limit import ValidateAtMaxSteps
from rnnlab.capabilities import Described, name_of
from rnnlab.checkpoint import (
    ResumePoint,
    StoreRunState,
    adopt,
    allowed_places,
    build_part,
    epoch_metrics,
    plan_resume,
)
from rnnlab.data.base import TaskDataModule
from rnnlab.dynamic_eval import check_settings, dynamic_metrics
from rnnlab.run.command import command
from rnnlab.run.job import in_multirun, resume_command, run_sweep_job, run_task
from rnnlab.search.trial import trial_callbacks
from rnnlab.utils.config import instantiate_group
from rnnlab.utils.ddp import finish_job
from rnnlab.utils.errors import RunInterrupted
from rnnlab.utils.files import as_floats, write_metrics
from rnnlab.utils.hparams import command_line_keys, log_hparams
from rnnlab.utils.logs import FILE_ONLY
from rnnlab.utils.report import command_line_overrides, metrics_table, run_directory_line, shown
from rnnlab.utils.run_config import settle

log = logging.getLogger(__name__)


def resolve_data_paths(data_cfg: DictConfig) -> None:
    """Make data file paths absolute, so stored checkpoints find them from any directory."""
    with open_dict(data_cfg):
        for key in ("train_file", "test_file", "file"):
            if data_cfg.get(key):
                data_cfg[key] = str(Path(data_cfg[key]).resolve())


def build_data_and_model(cfg: DictConfig) -> tuple[TaskDataModule, L.LightningModule]:
    """Build the DataModule, load and check its data, then complete the model config with what
    only the data knows (written back into ``cfg``, so checkpoints carry it) and build the model.
    Both are built as a checkpoint's are (``rnnlab.checkpoint.build``): a run whose classes its
    checkpoints could not load is refused here, in one line naming the key."""
    resolve_data_paths(cfg.data)
    places = allowed_places(cfg.get("user_classes"))
    datamodule = build_part(cfg, "data", places)
    settle(cfg, "data", datamodule.settled_config())  # e.g. the name of the user's own files
    datamodule.prepare_data()
    datamodule.setup("fit")
    with open_dict(cfg):
        cfg.model = OmegaConf.merge(cfg.model, datamodule.model_settings())
    model = build_part(cfg, "model", places)
    model.check_data(datamodule)  # e.g. baselines the data does not provide, in one line
    return datamodule, model


def fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    point: ResumePoint | None = None,
) -> dict[str, float]:
    """Fit (or resume from ``point``), then test the best checkpoint; the metrics of both."""
    checkpoints = checkpoint_dir(trainer, cfg)
    resumed = None if point is None else adopt(point, checkpoints)
    if point is not None and point.is_complete(int(cfg.trainer.max_epochs)):
        why = "stopped early" if point.stopped_early else f"trained {point.epochs_done} epochs"
        log.warning(
            "resume: %s already %s (trainer.max_epochs=%s): nothing to train; testing its best "
            "checkpoint again",
            point.source,
            why,
            cfg.trainer.max_epochs,
        )
        metrics = epoch_metrics(point.checkpoint)
        best, epochs = point.best_path, point.epochs_done
    else:
        with warnings.catch_warnings(), stopped_by_signal(trainer, checkpoints / "last.ckpt"):
            # the adopted checkpoints are in the folder already, on purpose
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* not empty")
            trainer.fit(model, datamodule=datamodule, ckpt_path=resumed)
        metrics = as_floats(trainer.callback_metrics)
        saved = cast("ModelCheckpoint | None", trainer.checkpoint_callback)
        best = saved.best_model_path if saved is not None else None
        epochs = trainer.current_epoch
    score = _best_score(trainer, point)
    if score is not None:
        metrics[f"{cfg.monitor}_best"] = score
    metrics["epochs"] = float(epochs)
    if cfg.get("test"):
        # fast_dev_run and checkpoint-less runs have no best file: test the weights in memory
        # (or, for a finished run resumed, the weights it was resumed from)
        if not best and resumed is not None:
            best = str(resumed)
        with stopped_by_signal(trainer, checkpoints / "last.ckpt"):
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        tested = as_floats(trainer.callback_metrics)
        metrics.update(tested)
        if trainer.is_global_zero:  # the console has Lightning's table of the same numbers
            title = f"test metrics of {shown(best) if best else 'the weights in memory'}:"
            log.info(metrics_table(title, tested), extra=FILE_ONLY)
    return metrics


@contextlib.contextmanager
def stopped_by_signal(trainer: L.Trainer, last: Path) -> Iterator[None]:
    """Turn Lightning's exit after SIGTERM (it finishes the batch, then raises) or Ctrl-C into
    ``RunInterrupted``, whose one line says how to resume. The last finished epoch's ``last``
    checkpoint is the resumable state: it resumes exactly, a mid-epoch one would not."""
    try:
        yield
    except SystemExit as exc:
        if not trainer.interrupted:
            raise
        # SIGTERM: Lightning's own stop; otherwise Ctrl-C, or submitit's exit after requeueing a
        # SLURM job at its time-limit signal
        name = signal.SIGTERM if isinstance(exc, SIGTERMException) else None
        name = name or slurm.stop_signal() or signal.SIGINT
        where = f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
        if last.is_file():
            how = f"continue it from the last finished epoch with: {resume_command(last)}"
        else:
            how = "no epoch had finished, so there is nothing to resume: run it again"
        # a SLURM job may be requeued, and then resumes by itself
        how = slurm.interruption_advice(last, resume_command(last)) or how
        raise RunInterrupted(f"{name.name} {where}; {how}", name) from exc


def _best_score(trainer: L.Trainer, point: ResumePoint | None) -> float | None:
    saved = cast("ModelCheckpoint | None", trainer.checkpoint_callback)
    if saved is not None and saved.best_model_score is not None:
        return float(saved.best_model_score)
    return None if point is None else point.best_score


def checkpoint_dir(trainer: L.Trainer, cfg: DictConfig) -> Path:
    """Where this run's checkpoints go (the checkpoint callback's folder)."""
    saved = cast("ModelCheckpoint | None", trainer.checkpoint_callback)
    if saved is not None and saved.dirpath:
        return Path(saved.dirpath)
    return Path(cfg.paths.output_dir) / "checkpoints"


def build_trainer(cfg: DictConfig, *extra_callbacks: L.Callback) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the configured callbacks and loggers, plus the ones
    every run gets: the config stored in checkpoints, the per-step seeds and a line per epoch.
    The progress bar is drawn only on a terminal (``shows_live_bar``)."""
    callbacks = [*instantiate_group(cfg.get("callbacks")), StoreRunState(cfg), StepSeed(cfg.seed)]
    callbacks += [EpochLines(cfg.monitor), ValidateAtMaxSteps(), *extra_callbacks]
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger to write to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    live_bar = shows_live_bar(cfg.trainer)
    if not live_bar:  # the Trainer refuses a bar it was told not to show
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_progress_bar=live_bar
    )


def describe_run(
    cfg: DictConfig, trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule
) -> str:
    """The run in one line, first in its log: what trains on which data, for how long, where,
    judged by which metric, and the command line's overrides."""
    what = type(model).__name__
    if isinstance(model, Described):  # by its encoder: 'SequenceClassifier (BiLSTM, 64 units)'
        what += f" ({model.display_name()})"
    data = name_of(datamodule)
    device = trainer.strategy.root_device
    where = str(device) if trainer.num_devices == 1 else f"{trainer.num_devices} {device.type}"
    epochs = cfg.trainer.get("max_epochs")
    length = "until stopped" if epochs in (None, -1) else f"up to {epochs} epoch(s)"
    line = (
        f"{cfg.task_name}: {what} on {data}, {length} on {where}, "
        f"monitor {cfg.monitor} ({cfg.monitor_mode}), seed {cfg.seed}"
    )
    overrides = command_line_overrides()
    return line + (f"; overrides: {' '.join(overrides)}" if overrides else "")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test with the best checkpoint; return (and write) the final metrics."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build_data_and_model(cfg)
    dynamic = check_settings(cfg.get("dynamic_eval"), model)  # refused before training
    point = plan_resume(cfg)  # a bad checkpoint is refused before the trainer starts
    timer = StartupTimer()
    # a trial of an Optuna search reports each validation epoch to its study (and is pruned)
    trainer = build_trainer(cfg, timer, *trial_callbacks(cfg))
    if trainer.is_global_zero:
        log.info(describe_run(cfg, trainer, model, datamodule))
    try:
        metrics = fit_and_test(cfg, trainer, model, datamodule, point)
    finally:
        finish_job(trainer)
    metrics.update(datamodule.data_metrics())  # e.g. a baseline fitted on a sample: how big
    if cfg.get("test") and trainer.is_global_zero:  # the tested (best) weights, adapting
        metrics.update(dynamic_metrics(dynamic, model, datamodule))
    # null when no step ran (a finished run resumed), so every run writes the same keys
    metrics["time/startup_to_first_step_s"] = timer.first_step_s  # type: ignore[assignment]
    metrics["time/train_s"] = time.perf_counter() - started
    if trainer.is_global_zero:
        log_hparams(trainer.loggers, cfg, metrics, command_line_keys())
        write_metrics(metrics, cfg.paths.output_dir)
        log.info(run_directory_line(cfg.paths.output_dir))
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a Hydra sweeper optimises: the monitored metric's best validation value."""
    value = metrics.get(f"{cfg.monitor}_best")
    return None if value is None or math.isnan(value) else value


def job(cfg: DictConfig) -> float | None:
    """What Hydra runs for each job: ``train``, its mistakes in one line (a sweep's recorded
    and passed over), and the objective for a sweeper."""
    if in_multirun():
        return run_sweep_job(train, cfg, objective)
    metrics = run_task(train, cfg)
    return objective(cfg, metrics)


def main() -> None:
    """The command ``rnnlab-train``: compose, check, run (``rnnlab.run``)."""
    command("train", job)


if __name__ == "__main__":
    main()

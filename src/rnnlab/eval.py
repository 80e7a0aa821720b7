"""Evaluation entry point: ``python -m rnnlab.eval ckpt_path=...`` re-tests a checkpoint.

The data and model are rebuilt from the config stored inside the checkpoint and the normaliser
statistics saved with it, so no training override has to be repeated and nothing is refitted.
"""

from __future__ import annotations

import logging

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.callbacks.progress import shows_live_bar
from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.dynamic_eval import check_settings, dynamic_metrics
from rnnlab.run.command import command
from rnnlab.run.job import run_task
from rnnlab.utils.config import instantiate_group
from rnnlab.utils.files import as_floats, write_metrics
from rnnlab.utils.logs import FILE_ONLY
from rnnlab.utils.report import metrics_table, run_directory_line, shown

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint at ``cfg.ckpt_path`` on its data set's test split."""
    seed, datamodule, model = restore(
        load_checkpoint(cfg.ckpt_path), cfg.ckpt_path, cfg.get("user_classes")
    )
    dynamic = check_settings(cfg.get("dynamic_eval"), model)
    text = OmegaConf.select(cfg, "data.file")
    if text:
        datamodule.use_test_file(str(text))
    datamodule.setup("test")  # bad data ends here, before the loggers write into the run dir
    L.seed_everything(seed, workers=True, verbose=False)
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, enable_progress_bar=shows_live_bar(cfg.trainer)
    )
    trainer.test(model, datamodule=datamodule)
    metrics = {**as_floats(trainer.callback_metrics), **datamodule.data_metrics()}
    if trainer.is_global_zero:
        metrics.update(dynamic_metrics(dynamic, model, datamodule))
        write_metrics(metrics, cfg.paths.output_dir)
        table = metrics_table(f"test metrics of {shown(cfg.ckpt_path)}:", metrics)
        log.info(table, extra=FILE_ONLY)  # the console has Lightning's table of the same numbers
        log.info(run_directory_line(cfg.paths.output_dir))
    return metrics


def job(cfg: DictConfig) -> None:
    """What Hydra runs: ``evaluate``, its mistakes in one line."""
    run_task(evaluate, cfg)


def main() -> None:
    """The command ``rnnlab-eval``: compose, check, run (``rnnlab.run``)."""
    command("eval", job)


if __name__ == "__main__":
    main()

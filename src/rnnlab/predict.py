"""Prediction entry point: ``python -m rnnlab.predict ckpt_path=... input=new.csv output=out.csv``.

The model, its data settings and its normaliser come from the checkpoint; ``input`` is raw data in
the format the task was trained on (a .ts file for classification and sequence regression, a CSV
for forecasting). Predictions are written in original units, all at once: an error leaves no
output file behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnlab.checkpoint import load_checkpoint, restore
from rnnlab.run.command import command
from rnnlab.run.job import run_task
from rnnlab.utils.errors import ConfigError, DataError
from rnnlab.utils.files import blocking_file, write_table
from rnnlab.utils.report import shown

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> pd.DataFrame:
    """Predict ``cfg.input`` with the checkpoint at ``cfg.ckpt_path``; write ``cfg.output``."""
    output = Path(cfg.output)
    if output.resolve() == Path(cfg.input).resolve():
        raise ConfigError(f"output={output} would overwrite the input; choose another path")
    blocker = blocking_file(output.parent)  # fail before any work, not after it
    if blocker is not None:
        raise DataError(f"cannot write {output}: {blocker} is a file; choose output=")
    if output.exists() and not cfg.get("overwrite"):
        raise ConfigError(
            f"output={output} exists; choose another path or pass overwrite=true to replace it"
        )
    seed, datamodule, model = restore(
        load_checkpoint(cfg.ckpt_path), cfg.ckpt_path, cfg.get("user_classes")
    )
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule.setup_predict(str(cfg.input))  # bad input fails here, before the trainer starts
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False)
    outputs = trainer.predict(model, datamodule=datamodule)
    frame = datamodule.prediction_frame(outputs)
    if trainer.is_global_zero:
        write_table(frame, output)
        log.info("wrote %d rows to %s", len(frame), shown(output))
    return frame


def job(cfg: DictConfig) -> None:
    """What Hydra runs: ``predict``, its mistakes in one line."""
    run_task(predict, cfg)


def main() -> None:
    """The command ``rnnlab-predict``: compose, check, run (``rnnlab.run``)."""
    command("predict", job)


if __name__ == "__main__":
    main()

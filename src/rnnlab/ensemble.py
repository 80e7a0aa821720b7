"""Ensemble entry point: ``python -m rnnlab.ensemble runs=<multirun dir or [run dirs]>``.

Each member is a run's ``checkpoints/best.ckpt``, loaded as untrusted data (``rnnlab.checkpoint``)
with its own normaliser. The members must share the task and the test split (the same data
settings, except those that only choose which training samples validate; the same fitted state,
except what is fitted on those samples). Their class probabilities (classification) or
predictions in original units (regression, forecasting) on the test split are averaged, and the
average is scored by the first member's own test step and metrics, so the ensemble's
``test/<metric>`` means what a single run's does. ``OUT/metrics.json`` holds them and each
member's own as ``member<i>/test/<metric>``; ``OUT/members.json`` says which run is member i.
``input=FILE predictions=OUT.csv`` also writes the ensemble's predictions for a file, in
``rnnlab.predict``'s format. Every check runs before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from rnnlab.capabilities import Averageable
from rnnlab.checkpoint import CONFIG_KEY, load_checkpoint, restore
from rnnlab.checkpoint.diff import first_difference
from rnnlab.run.command import command
from rnnlab.run.job import run_task
from rnnlab.utils.errors import ConfigError, DataError
from rnnlab.utils.files import as_floats, blocking_file, write_json, write_metrics, write_table
from rnnlab.utils.report import run_directory_line, shown

log = logging.getLogger(__name__)

BEST = Path("checkpoints") / "best.ckpt"


@dataclass
class Member:
    """One run of the ensemble: its checkpoint, stored config, DataModule and model (an
    ``Averageable``, ``rnnlab.capabilities``)."""

    checkpoint: Path
    config: dict[str, Any]
    data_state: dict[str, Any]
    datamodule: Any
    model: Any

    @property
    def output_key(self) -> str:
        """What of its ``predict_step`` output is averaged: class probabilities, predictions."""
        return str(self.model.averaged_output)


# --- which runs ------------------------------------------------------------------------------
def member_checkpoints(runs: str | Sequence[str] | None) -> list[Path]:
    """The best checkpoints of ``runs``: run directories, or multirun directories whose job
    folders (0, 1, ...) are runs. Every run must have one."""
    entries = [runs] if isinstance(runs, str) else list(runs or [])
    if not entries:
        raise ConfigError(
            "runs= names no runs; pass a multirun directory or a list of run directories "
            "(runs=[a,b])"
        )
    found: list[Path] = []
    for entry in entries:
        root = Path(str(entry))
        if not root.is_dir():
            raise DataError(f"runs: {root} is not a directory; pass run or multirun directories")
        if (root / BEST).exists() or (root / "checkpoints").is_dir():
            jobs = [root]
        else:
            jobs = sorted(
                (p for p in root.iterdir() if p.is_dir() and p.name.isdigit()),
                key=lambda p: int(p.name),
            )
            if not jobs:
                raise DataError(
                    f"runs: {root} is neither a run directory (no {BEST}) nor a multirun "
                    "directory (no job folders 0, 1, ...)"
                )
        for job in jobs:
            if not (job / BEST).is_file():
                raise DataError(
                    f"runs: {job} has no {BEST} (a failed or unfinished run?); list the runs "
                    "to ensemble as runs=[...]"
                )
            found.append(job / BEST)
    return found


def load_member(checkpoint: Path, user_classes: Sequence[str] = ()) -> Member:
    """Load and rebuild one member, safely (``rnnlab.checkpoint``), allowing the user's own
    ``user_classes`` (the command's) besides rnnlab's."""
    loaded = load_checkpoint(checkpoint)
    _, datamodule, model = restore(loaded, checkpoint, user_classes)
    if not isinstance(model, Averageable):
        raise DataError(
            f"{checkpoint} is a {type(model).__name__}'s; an ensemble averages classifiers, "
            "sequence regressors or forecasters"
        )
    probabilistic = getattr(getattr(model, "output", None), "probabilistic", False)
    if probabilistic or getattr(model, "decoder", "direct") != "direct":
        raise DataError(
            f"{checkpoint} forecasts a distribution, quantiles or autoregressive draws; an "
            "ensemble averages direct point forecasts: ensemble runs trained without "
            "model.distribution, model.quantiles and model.decoder=autoregressive"
        )
    return Member(checkpoint, loaded[CONFIG_KEY], datamodule.state_dict(), datamodule, model)


# --- do the members fit together -------------------------------------------------------------
def member_difference(first: Any, other: Any, where: str, skip: Collection[str]) -> str | None:
    """Where another member's stored values (``other``: config, data state) first differ from
    member 0's (``first``), in words; the top-level keys in ``skip`` are not compared."""
    found = first_difference(first, other, where, {f"{where}.{key}" for key in skip})
    if found is None:
        return None
    if found.kind == "tensor":
        return f"{found.where} differs"
    if found.kind == "length":
        return (
            f"{found.where} has {len(found.other)} entries there but {len(found.first)} in member 0"
        )
    return f"{found.where} is {found.other!r} there but {found.first!r} in member 0"


def check_members(members: list[Member]) -> None:
    """Refuse members of other tasks, or trained on other data (settings, test split, fitted
    state) than the first member, in one line naming the first difference."""
    first = members[0]
    for i, member in enumerate(members[1:], start=1):
        name = f"member {i} ({member.checkpoint})"
        if type(member.model) is not type(first.model):
            raise DataError(
                f"{name} is a {type(member.model).__name__}, member 0 ({first.checkpoint}) a "
                f"{type(first.model).__name__}; an ensemble's members share one task"
            )
        datamodule = first.datamodule
        difference = member_difference(
            first.config.get("data"), member.config.get("data"), "data", datamodule.split_settings
        ) or member_difference(
            first.data_state, member.data_state, "data state", datamodule.split_state
        )
        if difference:
            raise DataError(
                f"{name} does not share member 0's data: {difference}; ensemble runs of the "
                "same data and normalisation"
            )


# --- outputs on the test split ---------------------------------------------------------------
def _trainer(cfg: DictConfig) -> L.Trainer:
    return instantiate(cfg.trainer, logger=False)


def test_loader(member: Member) -> torch.utils.data.DataLoader:
    """The member's test split in stored order, without length bucketing: every member's rows
    line up, whatever its batch settings."""
    datamodule = member.datamodule
    datamodule.setup("test")
    return datamodule.loader(datamodule.dataset("test"), shuffle=False)


def test_outputs(cfg: DictConfig, member: Member) -> tuple[torch.Tensor, torch.Tensor]:
    """The member's ``predict_step`` output on its test split, and the split's targets."""
    loader = test_loader(member)
    outputs = _trainer(cfg).predict(member.model, dataloaders=loader)
    assert outputs is not None
    targets = torch.cat([batch.targets() for batch in loader])
    return torch.cat([o[member.output_key] for o in outputs]), targets  # type: ignore[call-overload]


def member_metrics(cfg: DictConfig, member: Member) -> dict[str, float]:
    """The member's own test metrics, as ``rnnlab.eval`` computes them."""
    trainer = _trainer(cfg)
    trainer.test(member.model, dataloaders=test_loader(member), verbose=False)
    return as_floats(trainer.callback_metrics)


class Replay:
    """Stands in for a model's ``forward`` during a test: returns the next rows of ``outputs``
    for each batch, so the model's own ``test_step`` scores precomputed outputs."""

    def __init__(self, outputs: torch.Tensor) -> None:
        self.outputs, self.used = outputs, 0

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = self.outputs[self.used : self.used + len(x)]
        self.used += len(x)
        return rows.to(x.device)


def as_forward_output(member: Member, average: torch.Tensor) -> torch.Tensor:
    """``average`` (the members' mean ``predict_step`` output, in test split order) as
    ``member``'s forward returns it, batch by batch (``Averageable.forward_output``)."""
    rows, done = [], 0
    for batch in test_loader(member):
        rows.append(member.model.forward_output(average[done : done + len(batch)], batch))
        done += len(batch)
    return torch.cat(rows)


def ensemble_metrics(cfg: DictConfig, member: Member, average: torch.Tensor) -> dict[str, float]:
    """The test metrics of ``average``, by ``member``'s own test step and metrics."""
    replay = Replay(as_forward_output(member, average))
    member.model.forward = replay
    try:
        trainer = _trainer(cfg)
        trainer.test(member.model, dataloaders=test_loader(member), verbose=False)
    finally:
        del member.model.forward  # the class's forward again
    if replay.used != len(average):  # every output scored exactly once
        raise RuntimeError(f"scored {replay.used} of {len(average)} ensemble outputs")
    return as_floats(trainer.callback_metrics)


# --- predictions for a file ------------------------------------------------------------------
def check_output(cfg: DictConfig) -> Path | None:
    """Where predictions go (None: nowhere); refused before any work when it cannot be."""
    if (cfg.get("input") is None) != (cfg.get("predictions") is None):
        raise ConfigError("set both input=<file> and predictions=<csv>, or neither")
    if cfg.get("predictions") is None:
        return None
    if not Path(str(cfg.input)).is_file():
        raise DataError(f"input={cfg.input} does not exist; pass the file to predict")
    output = Path(str(cfg.predictions))
    if output.resolve() == Path(str(cfg.input)).resolve():
        raise ConfigError(f"predictions={output} would overwrite the input; choose another path")
    blocker = blocking_file(output.parent)
    if blocker is not None:
        raise DataError(f"cannot write {output}: {blocker} is a file; choose predictions=")
    if output.exists() and not cfg.get("overwrite"):
        raise ConfigError(
            f"predictions={output} exists; choose another path or pass overwrite=true"
        )
    return output


def predict_file(cfg: DictConfig, members: list[Member], path: str) -> pd.DataFrame:
    """The ensemble's predictions for ``path`` in ``rnnlab.predict``'s format."""
    outputs = []
    for member in members:
        member.datamodule.setup_predict(path)
        batches = _trainer(cfg).predict(member.model, datamodule=member.datamodule)
        assert batches is not None
        outputs.append(torch.cat([b[member.output_key] for b in batches]))  # type: ignore[call-overload]
    average = torch.stack(outputs).mean(dim=0)
    return members[0].datamodule.prediction_frame([{members[0].output_key: average}])


# --- the command -----------------------------------------------------------------------------
def ensemble(cfg: DictConfig) -> dict[str, Any]:
    """Average the runs of ``cfg.runs`` on the test split; write and return the metrics."""
    runs = cfg.get("runs")
    output = check_output(cfg)
    paths = member_checkpoints(list(runs) if isinstance(runs, ListConfig) else runs)
    members = [load_member(path, cfg.get("user_classes") or ()) for path in paths]
    check_members(members)
    outputs, targets = zip(*(test_outputs(cfg, m) for m in members), strict=True)
    for i, member_targets in enumerate(targets[1:], start=1):
        if not torch.equal(member_targets, targets[0]):  # the settings agreed; the files did not
            raise DataError(
                f"member {i} ({members[i].checkpoint}) has other test targets than member 0; "
                "ensemble runs of the same data"
            )
    average = torch.stack(outputs).mean(dim=0)
    metrics: dict[str, Any] = {"members": len(members)}
    metrics.update(ensemble_metrics(cfg, members[0], average))
    for i, member in enumerate(members):
        own = member_metrics(cfg, member)
        metrics.update({f"member{i}/{key}": value for key, value in own.items()})
    frame = None if output is None else predict_file(cfg, members, str(cfg.input))
    if frame is not None and output is not None:
        write_table(frame, output, key="predictions")
    out = Path(cfg.paths.output_dir)
    write_json(out / "members.json", [str(m.checkpoint.resolve()) for m in members])
    write_metrics(metrics, out)
    log.info(
        "ensemble of %d: %s", len(members), {k: v for k, v in metrics.items() if k[:5] == "test/"}
    )
    if frame is not None and output is not None:
        log.info("wrote %d rows to %s", len(frame), shown(output))
    log.info(run_directory_line(out))
    return metrics


def job(cfg: DictConfig) -> None:
    """What Hydra runs: ``ensemble``, its mistakes in one line."""
    run_task(ensemble, cfg)


def main() -> None:
    """The command ``rnnlab-ensemble``: compose, check, run (``rnnlab.run``)."""
    command("ensemble", job)


if __name__ == "__main__":
    main()

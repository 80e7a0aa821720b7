"""Resuming a run from a checkpoint.

A resumed run writes to a run directory of its own. It first *adopts* the checkpoint: the best and
last checkpoints are copied into the new directory, with the checkpoint callback's paths pointed
there, so that Lightning restores the best score too (it drops it when the directory changes) and
the new directory holds everything of the run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.checkpoint.allowlist import Place, allowed_places
from rnnlab.checkpoint.diff import first_difference
from rnnlab.checkpoint.format import CONFIG_KEY, DATA_KEY, load_checkpoint, save_atomically
from rnnlab.checkpoint.rebuild import check_stored
from rnnlab.checkpoint.stored import check_data_state
from rnnlab.checkpoint.training_state import check_training_state
from rnnlab.checkpoint.weights import built_nodes
from rnnlab.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Settings that may differ between an interrupted run and its resumption: file locations move
# between machines; worker processes, the encoder's path (same outputs and gradients) and the
# bound on input file sizes (a checkpoint of an earlier release has none) do not change what is
# computed.
_MAY_DIFFER = {
    "data.num_workers",
    "data.max_file_mb",
    # the text cache is keyed by the file's content: another folder rebuilds the same ids
    "data.cache_dir",
    "data.file",
    "data.train_file",
    "data.test_file",
    "model.encoder.impl",
}


@dataclass
class ResumePoint:
    """A checkpoint to resume from, and how far its training got."""

    source: Path
    checkpoint: dict[str, Any]
    epochs_done: int
    stopped_early: bool

    def is_complete(self, max_epochs: int) -> bool:
        """Whether resuming would train nothing: every epoch ran, or early stopping ended it."""
        return self.stopped_early or self.epochs_done >= max_epochs

    @property
    def best_score(self) -> float | None:
        _, state = _checkpoint_callback_state(self.checkpoint)
        score = state.get("best_model_score")
        return None if score is None else float(score)

    @property
    def best_path(self) -> str | None:
        """The best checkpoint the run recorded (None when it had no checkpoint callback)."""
        _, state = _checkpoint_callback_state(self.checkpoint)
        return str(state["best_model_path"]) if state.get("best_model_path") else None


def _checkpoint_callback_state(checkpoint: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The key and state of the run's ModelCheckpoint callback (None and {} without one)."""
    for key, state in checkpoint.get("callbacks", {}).items():
        if str(key).startswith("ModelCheckpoint") and isinstance(state, dict):
            return key, state
    return None, {}


def _stopped_early(checkpoint: dict[str, Any]) -> bool:
    return any(
        str(key).startswith("EarlyStopping") and int(state.get("stopped_epoch", 0)) > 0
        for key, state in checkpoint.get("callbacks", {}).items()
        if isinstance(state, dict)
    )


def _epochs_done(checkpoint: dict[str, Any]) -> int:
    """Epochs whose training finished before the save (Lightning counts an epoch as processed
    once its batches ran, before its end-of-epoch hooks, where checkpoints are written)."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    return int(progress.get("current", {}).get("processed", checkpoint.get("epoch", 0)))


def find_resume_checkpoint(cfg: DictConfig) -> Path | None:
    """``ckpt_path``; else this run directory's own ``last.ckpt`` (a cluster job requeued after
    preemption runs again in its directory); else with ``resume=auto`` the newest ``last.ckpt``
    among this task's earlier runs. None: start fresh."""
    if cfg.get("ckpt_path"):
        return Path(str(cfg.ckpt_path))
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        log.warning("resuming from %s, left in this run directory by an earlier attempt", own)
        return own
    resume = cfg.get("resume")
    if resume is None:
        return None
    if resume != "auto":
        raise ConfigError(f"resume={resume!r}: use resume=auto, or ckpt_path=<file> to pick one")
    if _in_sweep():  # a sweep continued in place: a job resumes its own run or starts afresh
        log.info("resume=auto: no last.ckpt in this job's directory; starting fresh")
        return None
    runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
    here = Path(cfg.paths.output_dir).resolve()
    found = [p for p in runs.glob("*/checkpoints/last.ckpt") if p.parents[1].resolve() != here]
    if not found:
        log.warning("resume=auto: no last.ckpt under %s; starting fresh", runs)
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("resume=auto: resuming from %s", newest)
    return newest


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _part(config: Any, dotted: str) -> Any:
    """The node at ``dotted`` of a plain config (None where it is missing)."""
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _added_since(
    stored: dict[str, Any], current: dict[Any, Any], places: Mapping[str, Place]
) -> set[str]:
    """The settings a checkpoint of an earlier release lacks (its class gained them since) that
    this run leaves at the class's default: the stored run built the same object without them."""
    same: set[str] = set()
    for part in ("data", "model"):
        for where, node, cls in built_nodes(stored.get(part), part, places):
            now = _part(current, where)
            defaults = _defaults(cls)
            for key, value in now.items() if isinstance(now, dict) else ():
                if key not in node and key in defaults and defaults[key] == value:
                    same.add(f"{where}.{key}")
    return same


def _defaults(cls: type) -> dict[str, Any]:
    """The default of each keyword argument ``cls`` takes, following ``**kwargs`` up to the
    base classes (as ``build`` finds its settings)."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.default is not inspect.Parameter.empty:
                found.setdefault(p.name, p.default)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return found


def plan_resume(cfg: DictConfig) -> ResumePoint | None:
    """Read the checkpoint a run resumes from and check that resuming it makes sense: the same
    data, model and weight-averaging settings, and no fewer epochs asked for than it already
    trained."""
    source = find_resume_checkpoint(cfg)
    if source is None:
        return None
    checkpoint = load_checkpoint(source)
    # all of it checked now, before the trainer or the run's checkpoints folder exist:
    # Lightning restores its part without looking at it
    places = allowed_places(cfg.get("user_classes"))
    model = check_stored(checkpoint, source, places)
    stored = checkpoint[CONFIG_KEY]
    # its data state against the config's sizes (its keys are the DataModule's to check, when
    # Lightning gives it back: StoreRunState.on_load_checkpoint)
    check_data_state(_data_state(checkpoint, stored), stored, source)
    current = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(current, dict)
    # the weight averaging too: its checkpoints hold the average where the weights belong, so
    # a run resumed without it (or with another decay) would continue from the wrong weights
    skip = _MAY_DIFFER | _added_since(stored, current, places)
    for part in ("data", "model", "callbacks.weight_averaging"):
        found = first_difference(_part(stored, part), _part(current, part), part, skip)
        if found:
            raise ConfigError(
                f"cannot resume from {source}: {found.where} is {found.first!r} in the checkpoint "
                f"but {found.other!r} now; give the interrupted run's overrides"
            )
    # the model's settings are this run's now, so its optimiser and scheduler can be made
    check_training_state(checkpoint, source, stored["model"], model, places)
    _best_files(source, checkpoint)
    point = ResumePoint(source, checkpoint, _epochs_done(checkpoint), _stopped_early(checkpoint))
    max_epochs = int(cfg.trainer.max_epochs)
    if max_epochs >= 0 and point.epochs_done > max_epochs:
        raise ConfigError(
            f"cannot resume from {source}: it has trained {point.epochs_done} epochs, more than "
            f"trainer.max_epochs={max_epochs}; set trainer.max_epochs >= {point.epochs_done}"
        )
    return point


def _relocated(
    checkpoint: dict[str, Any], moved: dict[str, str], checkpoint_dir: Path, last: str
) -> dict[str, Any]:
    """``checkpoint`` with its checkpoint callback's paths rewritten by ``moved``."""
    key, state = _checkpoint_callback_state(checkpoint)
    if key is None:
        return checkpoint
    by_name = {Path(old).name: new for old, new in moved.items()}
    state = {
        **state,
        "dirpath": str(checkpoint_dir),
        "best_model_path": by_name.get(Path(state.get("best_model_path") or "").name, ""),
        "kth_best_model_path": by_name.get(Path(state.get("kth_best_model_path") or "").name, ""),
        # by name (a best checkpoint may name its files by other paths than the resumed one),
        # and only files adopted here: Lightning deletes a best file that a better one replaces
        "best_k_models": {
            by_name[Path(p).name]: v
            for p, v in state.get("best_k_models", {}).items()
            if Path(p).name in by_name
        },
        "last_model_path": last,
    }
    return {**checkpoint, "callbacks": {**checkpoint["callbacks"], key: state}}


def _data_state(checkpoint: dict[str, Any], stored: dict[str, Any]) -> Any:
    """The stored data state: under ``DATA_KEY``, or in format 1 under the DataModule's class
    name (the last part of the stored data ``_target_``, which ``check_stored`` allowed)."""
    if DATA_KEY in checkpoint:
        return checkpoint[DATA_KEY]
    return checkpoint.get(str(stored["data"]["_target_"]).rpartition(".")[2])


def _best_files(source: Path, checkpoint: dict[str, Any]) -> dict[str, Path]:
    """The best checkpoint(s) the resumed one names, each by its stored path, found beside it:
    a run's files travel as a folder between machines, so only the file's name is used, never
    the absolute path that was valid where it was written (or one crafted to point anywhere)."""
    _, state = _checkpoint_callback_state(checkpoint)
    originals: dict[str, Path] = {}
    for path in [state.get("best_model_path"), *state.get("best_k_models", {})]:
        if not path:
            continue
        originals[path] = source.parent / Path(path).name
        if not originals[path].is_file():
            raise DataError(
                f"cannot resume from {source}: its best checkpoint {Path(path).name} is "
                "not beside it; copy the run's checkpoints folder whole"
            )
    return originals


def adopt(point: ResumePoint, checkpoint_dir: Path) -> Path:
    """Copy the resumed checkpoint and the best one(s) beside it into ``checkpoint_dir`` (the new
    run's), with the checkpoint callback's paths pointing there. Returns the adopted copy, which
    is what ``Trainer.fit`` resumes from."""
    originals = _best_files(point.source, point.checkpoint)  # before anything is created
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    adopted = checkpoint_dir / point.source.name
    moved = {path: str(checkpoint_dir / original.name) for path, original in originals.items()}
    last = checkpoint_dir / "last.ckpt"
    # Lightning deletes the previous last checkpoint when it writes a new one: only name it when
    # it really is the last one
    last_path = str(last) if adopted == last else ""
    for path, original in originals.items():
        if original.resolve() != Path(moved[path]).resolve() and original != point.source:
            best = _relocated(load_checkpoint(original), moved, checkpoint_dir, last_path)
            save_atomically(best, Path(moved[path]))
    point.checkpoint = _relocated(point.checkpoint, moved, checkpoint_dir, last_path)
    save_atomically(point.checkpoint, adopted)
    return adopted

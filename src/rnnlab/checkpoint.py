"""The checkpoint format: what rnnlab stores in a Lightning checkpoint, how a checkpoint is read
safely, and how a run resumes from one.

Besides Lightning's own entries a checkpoint holds the resolved run config (``CONFIG_KEY``), the
DataModule's fitted state (``DATA_KEY``: normaliser statistics, class list) and the metrics of the
epoch it was saved after (``METRICS_KEY``), all plain types and tensors, so every checkpoint loads
with ``torch.load(..., weights_only=True)``. Loading one never runs code: see ``restore``.

A resumed run writes to a run directory of its own. It first *adopts* the checkpoint: the best and
last checkpoints are copied into the new directory, with the checkpoint callback's paths pointed
there, so that Lightning restores the best score too (it drops it when the directory changes) and
the new directory holds everything of the run.
"""

from __future__ import annotations

import functools
import inspect
import logging
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import ConfigError, DataError, first_line
from rnnlab.utils.files import as_floats, atomic_path

log = logging.getLogger(__name__)

CONFIG_KEY = "rnnlab_config"
METRICS_KEY = "rnnlab_epoch_metrics"
DATA_KEY = "rnnlab_data_state"
# Settings that may differ between an interrupted run and its resumption: file locations move
# between machines; worker processes and the encoder's path (same outputs and gradients) do not
# change what is computed.
_MAY_DIFFER = {
    "data.num_workers",
    "data.file",
    "data.train_file",
    "data.test_file",
    "model.encoder.impl",
}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by rnnlab without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/best.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        # torch's own text for this case advises weights_only=False, which we must not echo
        reason = "" if "weights_only" in str(exc) else f" ({first_line(exc)})"
        raise DataError(
            f"cannot load checkpoint {path} safely{reason}; it is truncated, "
            "corrupted, or holds objects other than tensors and plain types"
        ) from exc
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise DataError(f"{path} is not an rnnlab checkpoint (no stored run config)")
    return checkpoint


def save_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` so that ``path`` is never seen half written."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through ``atomic_path``: a crash mid-write never leaves a
    torn ``last.ckpt`` (a resumed run sees the old file or the new one)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class StoreRunState(L.Callback):
    """Puts what rnnlab adds to a checkpoint into every one the trainer writes: the resolved run
    config and the DataModule's fitted state, as plain types (eval and predict rebuild data and
    model from the checkpoint alone, and ``weights_only`` loading works), and the metrics of the
    epoch just finished (resuming a finished run reports what the run reported)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[METRICS_KEY] = as_floats(trainer.callback_metrics)
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            checkpoint[DATA_KEY] = datamodule.state_dict()


def epoch_metrics(checkpoint: dict[str, Any]) -> dict[str, float]:
    """The metrics of the epoch the checkpoint was saved after."""
    return as_floats(checkpoint.get(METRICS_KEY, {}))


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
    runs = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
    here = Path(cfg.paths.output_dir).resolve()
    found = [p for p in runs.glob("*/checkpoints/last.ckpt") if p.parents[1].resolve() != here]
    if not found:
        log.warning("resume=auto: no last.ckpt under %s; starting fresh", runs)
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("resume=auto: resuming from %s", newest)
    return newest


def _first_difference(stored: Any, current: Any, where: str) -> str | None:
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in sorted(set(stored) | set(current)):
            if f"{where}.{key}" in _MAY_DIFFER:
                continue
            found = _first_difference(stored.get(key), current.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if stored != current:
        return f"{where} is {stored!r} in the checkpoint but {current!r} now"
    return None


def _part(config: Any, dotted: str) -> Any:
    """The node at ``dotted`` of a plain config (None where it is missing)."""
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def plan_resume(cfg: DictConfig) -> ResumePoint | None:
    """Read the checkpoint a run resumes from and check that resuming it makes sense: the same
    data, model and weight-averaging settings, and no fewer epochs asked for than it already
    trained."""
    source = find_resume_checkpoint(cfg)
    if source is None:
        return None
    checkpoint = load_checkpoint(source)
    stored = checkpoint[CONFIG_KEY]
    current = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(current, dict)
    # the weight averaging too: its checkpoints hold the average where the weights belong, so
    # a run resumed without it (or with another decay) would continue from the wrong weights
    for part in ("data", "model", "callbacks.weight_averaging"):
        difference = _first_difference(_part(stored, part), _part(current, part), part)
        if difference:
            raise ConfigError(
                f"cannot resume from {source}: {difference}; give the interrupted run's overrides"
            )
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
    state = {
        **state,
        "dirpath": str(checkpoint_dir),
        "best_model_path": moved.get(state.get("best_model_path") or "", ""),
        "kth_best_model_path": moved.get(state.get("kth_best_model_path") or "", ""),
        "best_k_models": {moved[p]: v for p, v in state.get("best_k_models", {}).items()},
        "last_model_path": last,
    }
    return {**checkpoint, "callbacks": {**checkpoint["callbacks"], key: state}}


def adopt(point: ResumePoint, checkpoint_dir: Path) -> Path:
    """Copy the resumed checkpoint and the best one(s) beside it into ``checkpoint_dir`` (the new
    run's), with the checkpoint callback's paths pointing there. Returns the adopted copy, which
    is what ``Trainer.fit`` resumes from."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    adopted = checkpoint_dir / point.source.name
    _, state = _checkpoint_callback_state(point.checkpoint)
    originals: dict[str, Path] = {}
    for path in [state.get("best_model_path"), *state.get("best_k_models", {})]:
        if not path:
            continue
        # a run's files travel as a folder between machines: look beside the checkpoint, not at
        # the absolute path that was valid where it was written
        originals[path] = point.source.parent / Path(path).name
        if not originals[path].is_file():
            raise DataError(
                f"cannot resume from {point.source}: its best checkpoint {Path(path).name} is "
                "not beside it; copy the run's checkpoints folder whole"
            )
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


# --- rebuilding data and model from a checkpoint ---------------------------------------------
# A checkpoint is data. Its stored config may name only these classes, each only at its own
# place, with keyword arguments the class declares and plain values: nothing in it is looked
# up by name, resolved or instantiated through Hydra, so no dotted path or interpolation in a
# crafted file can reach code (Hydra's locate follows module attributes: a prefix test would
# let ``rnnlab.x.os.system`` through).
def _registry() -> dict[str, dict[str, Callable[..., Any]]]:
    from rnnlab.data.classification import ClassificationDataModule
    from rnnlab.data.forecast import ForecastDataModule
    from rnnlab.data.probes import AddingDataModule, CopyDataModule
    from rnnlab.data.regression import RegressionDataModule
    from rnnlab.data.text import TextDataModule
    from rnnlab.models.classifier import SequenceClassifier
    from rnnlab.models.encoder import RNNEncoder
    from rnnlab.models.forecaster import Forecaster
    from rnnlab.models.language import LanguageModel
    from rnnlab.models.lstm_fcn import LSTMFCNEncoder
    from rnnlab.models.regressor import SequenceRegressor
    from rnnlab.models.tagger import SequenceTagger

    optim, schedulers = torch.optim, torch.optim.lr_scheduler
    return {
        "data": {
            "rnnlab.data.classification.ClassificationDataModule": ClassificationDataModule,
            "rnnlab.data.regression.RegressionDataModule": RegressionDataModule,
            "rnnlab.data.forecast.ForecastDataModule": ForecastDataModule,
            "rnnlab.data.text.TextDataModule": TextDataModule,
            "rnnlab.data.probes.AddingDataModule": AddingDataModule,
            "rnnlab.data.probes.CopyDataModule": CopyDataModule,
        },
        "model": {
            "rnnlab.models.classifier.SequenceClassifier": SequenceClassifier,
            "rnnlab.models.regressor.SequenceRegressor": SequenceRegressor,
            "rnnlab.models.forecaster.Forecaster": Forecaster,
            "rnnlab.models.language.LanguageModel": LanguageModel,
            "rnnlab.models.tagger.SequenceTagger": SequenceTagger,
        },
        "model.encoder": {
            "rnnlab.models.encoder.RNNEncoder": RNNEncoder,
            "rnnlab.models.lstm_fcn.LSTMFCNEncoder": LSTMFCNEncoder,
        },
        # torch's public optimiser and scheduler classes, each under its public name only
        "model.optimizer": {
            f"torch.optim.{name}": getattr(optim, name)
            for name in optim.__all__
            if _is_subclass(getattr(optim, name), optim.Optimizer)
        },
        "model.scheduler": {
            f"torch.optim.lr_scheduler.{name}": getattr(schedulers, name)
            for name in schedulers.__all__
            if name not in _TAKES_CALLABLES
            and (
                _is_subclass(getattr(schedulers, name), schedulers.LRScheduler)
                or getattr(schedulers, name) is schedulers.ReduceLROnPlateau
            )
        },
    }


# schedulers built from functions or other schedulers, which plain config values cannot give
_TAKES_CALLABLES = {"LambdaLR", "MultiplicativeLR", "ChainedScheduler", "SequentialLR"}


def _is_subclass(value: Any, base: type) -> bool:
    return isinstance(value, type) and issubclass(value, base) and value is not base


# settings that older checkpoints carry and rnnlab no longer takes (figures moved to callbacks)
_RETIRED = {"model.plot_windows"}
# places whose object is completed later (with the parameters, with the optimizer)
_PARTIAL = {"model.optimizer", "model.scheduler"}
_MAY_BE_NULL = {"model.scheduler"}


def _refuse(path: Path | str, where: str, problem: str) -> DataError:
    return DataError(f"checkpoint {path}: {where} {problem}; refusing to load it")


def _check_plain(value: Any, where: str, path: Path | str) -> None:
    """Scalars and lists of scalars only; no mappings, no interpolations."""
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, list | tuple | dict):
                raise _refuse(path, f"{where}[{i}]", "nests a list or mapping inside a list")
            _check_plain(item, f"{where}[{i}]", path)
    elif isinstance(value, dict):
        raise _refuse(path, where, "is a mapping where a plain value belongs")
    elif isinstance(value, str) and "${" in value:
        raise _refuse(path, where, f"holds an interpolation ({value!r})")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise _refuse(path, where, f"holds a {type(value).__name__}, not a plain value")


def _settings(cls: type) -> set[str]:
    """The keyword arguments ``cls`` takes, following ``**kwargs`` up to the base classes."""
    names: set[str] = set()
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())
        names |= {p.name for p in parameters if p.kind not in variadic}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return names - {"self"}


def _build(node: Any, place: str, path: Path | str, registry: dict[str, dict[str, Any]]) -> Any:
    """The object ``node`` describes, if it names a class allowed at ``place`` with arguments
    that class takes."""
    if node is None and place in _MAY_BE_NULL:
        return None
    if not isinstance(node, dict):
        raise _refuse(path, place, "is not a mapping")
    allowed = registry[place]
    target = node.get("_target_")
    if not isinstance(target, str) or target not in allowed:
        raise _refuse(
            path, f"{place}._target_", f"is {target!r}, not one of {', '.join(sorted(allowed))}"
        )
    cls = allowed[target]
    parameters = _settings(cls)
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{place}.{key}"
        if key == "_target_" or (key == "_partial_" and place in _PARTIAL and value is True):
            continue
        if where in _RETIRED:
            continue
        if where in registry:
            kwargs[key] = _build(value, where, path, registry)
        elif key.startswith("_") or key not in parameters or key == "params":
            raise _refuse(path, where, f"is not a setting of {target}")
        else:
            _check_plain(value, where, path)
            kwargs[key] = value
    if place in _PARTIAL:
        if node.get("_partial_") is not True:
            raise _refuse(path, place, "must be a partial (_partial_: true)")
        return functools.partial(cls, **kwargs)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # e.g. a required argument missing
        raise _refuse(path, place, f"cannot be built ({first_line(exc)})") from exc


@dataclass
class Restored:
    """What a checkpoint rebuilds: its run's seed, DataModule (with its fitted state) and model
    (with its weights)."""

    seed: int
    datamodule: Any
    model: Any

    def __iter__(self) -> Any:  # ``_, datamodule, model = restore(...)``
        return iter((self.seed, self.datamodule, self.model))


def restore(checkpoint: dict[str, Any], path: Path | str = "<checkpoint>") -> Restored:
    """Rebuild a run's DataModule and model from a checkpoint loaded by ``load_checkpoint``."""
    stored = checkpoint.get(CONFIG_KEY)
    if not isinstance(stored, dict):
        raise _refuse(path, CONFIG_KEY, "is not a mapping")
    seed = stored.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _refuse(path, "seed", "is not an integer")
    registry = _registry()
    datamodule = _build(stored.get("data"), "data", path, registry)
    model = _build(stored.get("model"), "model", path, registry)
    state = checkpoint.get(DATA_KEY, checkpoint.get(type(datamodule).__qualname__))
    if not isinstance(state, dict):
        raise _refuse(path, "the data state", "is missing")
    try:
        datamodule.load_state_dict(state)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise _refuse(path, "the data state", f"is not what rnnlab wrote ({exc!r})") from exc
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise _refuse(
            path, "the weights", f"do not fit the model its config describes ({first_line(exc)})"
        ) from exc
    return Restored(seed, datamodule, model)

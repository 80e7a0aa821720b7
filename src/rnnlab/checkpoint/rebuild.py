"""Rebuilding a run's DataModule and model from a checkpoint, safely."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnlab.checkpoint.format import CONFIG_KEY, stored_data_state
from rnnlab.utils.errors import DataError, first_line


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
    state = stored_data_state(checkpoint, datamodule)
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

"""What a run's config may build, and where: the allow-list that training and checkpoint loading
share (``rnnlab.checkpoint.build``). It is made from code and the *current* command's config,
never from a checkpoint.

- rnnlab's own classes are declared once, by the ``_target_`` of each file of the config groups
  ``data/``, ``model/`` and ``model/encoder/`` of the installed package: a class may be built
  exactly where rnnlab's own configs build it.
- torch's optimisers and schedulers, at ``model.optimizer`` and ``model.scheduler``, by their
  public names (``torch.optim.AdamW``), as partials the model completes.
- A user's own classes, by the exact dotted paths the command's ``user_classes`` lists; each goes
  to the place its type says: a LightningDataModule to ``data``, a LightningModule to ``model``,
  any other ``torch.nn.Module`` to ``model.encoder``. A class is imported only because that list
  names it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch import nn

from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError, first_line

USER_CLASSES = "user_classes"  # the key of the commands' configs that lists a user's classes


@dataclass(frozen=True)
class Place:
    """A place of the run config where an object is built, and what may be built there."""

    classes: Mapping[str, type]  # the exact ``_target_`` strings allowed, and their classes
    partial: bool = False  # built as a partial the model completes (``_partial_: true``)
    optional: bool = False  # null switches the object off
    supplied: frozenset[str] = frozenset()  # arguments the model passes in, never the config
    takes_user_classes: bool = False  # whether ``user_classes`` can add to ``classes``


# The places whose classes rnnlab declares in its config groups, with the group and the kind of
# class each builds. A user's class goes to the first place whose kind it is (a LightningModule
# is an nn.Module too, so order matters).
_OWN_PLACES: dict[str, tuple[str, type]] = {
    "data": ("data", L.LightningDataModule),
    "model": ("model", L.LightningModule),
    "model.encoder": ("model/encoder", nn.Module),
}
# what the model passes to the partial optimiser (its parameters) and scheduler (the optimiser)
_PARAMS, _OPTIMIZER = frozenset({"params"}), frozenset({"optimizer"})


def allowed_places(user_classes: Iterable[str] | None = ()) -> dict[str, Place]:
    """Every place a run builds an object at (dotted, as in the run config), with the classes
    allowed there: rnnlab's own, torch's optimisers and schedulers, and ``user_classes``."""
    if isinstance(user_classes, str):  # user_classes=a.B on the command line is not a list
        raise ConfigError(
            f"{USER_CLASSES}={user_classes} is not a list; write {USER_CLASSES}=[{user_classes}]"
        )
    classes = {place: dict(_declared(group)) for place, (group, _) in _OWN_PLACES.items()}
    for path in user_classes or ():
        cls = _user_class(str(path))
        classes[_place_of(str(path), cls)][str(path)] = cls
    places = {place: Place(found, takes_user_classes=True) for place, found in classes.items()}
    places["model.optimizer"] = Place(_torch_optimizers(), partial=True, supplied=_PARAMS)
    places["model.scheduler"] = Place(
        _torch_schedulers(), partial=True, optional=True, supplied=_OPTIMIZER
    )
    return places


@functools.cache
def _declared(group: str) -> tuple[tuple[str, type], ...]:
    """The ``_target_`` of each file of the shipped config group ``group``, and its class."""
    found = []
    for file in sorted((Path(config_dir()) / group).glob("*.yaml")):
        node = yaml.safe_load(file.read_text(encoding="utf-8"))
        target = node.get("_target_") if isinstance(node, dict) else None
        if isinstance(target, str):  # files without one compose another option
            module, _, name = target.rpartition(".")
            found.append((target, getattr(importlib.import_module(module), name)))
    return tuple(found)


def _user_class(path: str) -> type:
    """The class at ``path`` (package.module.Class), which the user's own config named."""
    module_name, _, name = path.rpartition(".")
    if not module_name or not name:
        raise ConfigError(f"{USER_CLASSES}: {path!r} is not a dotted path such as pkg.module.Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{USER_CLASSES}: cannot import {module_name} for {path!r} ({first_line(exc)})"
        ) from exc
    if not hasattr(module, name):
        raise ConfigError(f"{USER_CLASSES}: {path!r} names nothing in {module_name}")
    found: Any = getattr(module, name)
    if not isinstance(found, type):
        raise ConfigError(f"{USER_CLASSES}: {path!r} is a {type(found).__name__}, not a class")
    return found


def _place_of(path: str, cls: type) -> str:
    for place, (_, kind) in _OWN_PLACES.items():
        if issubclass(cls, kind):
            return place
    raise ConfigError(
        f"{USER_CLASSES}: {path!r} is not a LightningDataModule, LightningModule or "
        "torch.nn.Module, the classes a run builds (at data, model and model.encoder)"
    )


@functools.cache
def _torch_optimizers() -> dict[str, type]:
    optim = torch.optim
    return {
        f"torch.optim.{name}": getattr(optim, name)
        for name in optim.__all__
        if _is_subclass(getattr(optim, name), optim.Optimizer)
    }


# schedulers built from functions or other schedulers, which plain config values cannot give
_TAKES_CALLABLES = {"LambdaLR", "MultiplicativeLR", "ChainedScheduler", "SequentialLR"}


@functools.cache
def _torch_schedulers() -> dict[str, type]:
    schedulers = torch.optim.lr_scheduler
    return {
        f"torch.optim.lr_scheduler.{name}": getattr(schedulers, name)
        for name in schedulers.__all__
        if name not in _TAKES_CALLABLES
        and (
            _is_subclass(getattr(schedulers, name), schedulers.LRScheduler)
            or getattr(schedulers, name) is schedulers.ReduceLROnPlateau
        )
    }


def _is_subclass(value: Any, base: type) -> bool:
    return isinstance(value, type) and issubclass(value, base) and value is not base

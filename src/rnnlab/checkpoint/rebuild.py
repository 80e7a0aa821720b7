"""Rebuilding a run's DataModule and model from a checkpoint, safely: its stored config is
checked against the allow-list and built by the builder training uses (``build.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.checkpoint.allowlist import allowed_places
from rnnlab.checkpoint.build import PARTS, NotBuildable, build, check
from rnnlab.checkpoint.format import CONFIG_KEY, stored_data_state
from rnnlab.utils.errors import DataError, first_line


@dataclass
class Restored:
    """What a checkpoint rebuilds: its run's seed, DataModule (with its fitted state) and model
    (with its weights)."""

    seed: int
    datamodule: Any
    model: Any

    def __iter__(self) -> Any:  # ``_, datamodule, model = restore(...)``
        return iter((self.seed, self.datamodule, self.model))


def _refuse(path: Path | str, where: str, problem: str) -> DataError:
    return DataError(f"checkpoint {path}: {where} {problem}; refusing to load it")


def restore(
    checkpoint: dict[str, Any],
    path: Path | str = "<checkpoint>",
    user_classes: Iterable[str] | None = (),
) -> Restored:
    """Rebuild a run's DataModule and model from a checkpoint loaded by ``load_checkpoint``.
    ``user_classes`` (the current command's, never the checkpoint's) are the user's own classes
    it may build besides rnnlab's."""
    stored = checkpoint.get(CONFIG_KEY)
    if not isinstance(stored, dict):
        raise _refuse(path, CONFIG_KEY, "is not a mapping")
    seed = stored.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _refuse(path, "seed", "is not an integer")
    places = allowed_places(user_classes)
    try:
        for part in PARTS:  # all of it, before any object is built
            check(stored.get(part), part, places)
        datamodule = build(stored["data"], "data", places)
        model = build(stored["model"], "model", places)
    except NotBuildable as exc:
        raise _refuse(path, exc.where, exc.problem) from exc
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

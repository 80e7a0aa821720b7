"""Rebuilding a run's DataModule and model from a checkpoint, safely: everything it stores is
checked first (``check_stored``: the config against the allow-list and for plain values, the
weights against the model that config describes, the data state against its sizes), and only
then built, by the builder training uses (``build.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from rnnlab.checkpoint.allowlist import Place, allowed_places
from rnnlab.checkpoint.build import PARTS, NotBuildable, build, check
from rnnlab.checkpoint.format import CONFIG_KEY, METRICS_KEY, stored_data_state
from rnnlab.checkpoint.stored import (
    Malformed,
    check_config,
    check_data_state,
    check_metrics,
)
from rnnlab.checkpoint.weights import check_weights
from rnnlab.utils.errors import UserError, first_line


@dataclass
class Restored:
    """What a checkpoint rebuilds: its run's seed, DataModule (with its fitted state) and model
    (with its weights)."""

    seed: int
    datamodule: Any
    model: Any

    def __iter__(self) -> Any:  # ``_, datamodule, model = restore(...)``
        return iter((self.seed, self.datamodule, self.model))


def check_stored(
    checkpoint: dict[str, Any], path: Path | str, places: Mapping[str, Place]
) -> nn.Module:
    """Refuse ``checkpoint`` in one line unless all rnnlab reads from it is what rnnlab writes:
    the config (string keys, a usable seed, only allowed classes with plain settings), the
    weights (exactly those of the model the config describes, compared before that model
    exists), the epoch's metrics and the data state (types, dtypes, shapes against the
    config's sizes). The model, built on the meta device (shapes, no memory)."""
    stored = checkpoint.get(CONFIG_KEY)
    check_config(stored, path)
    assert isinstance(stored, dict)
    check_metrics(checkpoint.get(METRICS_KEY), path)
    with _refused_as_stored(path):
        for part in PARTS:  # all of it, before any object is built
            check(stored.get(part), part, places)
        return check_weights(
            checkpoint.get("state_dict"), stored["model"], places, path, "the weights"
        )


@contextlib.contextmanager
def _refused_as_stored(path: Path | str) -> Iterator[None]:
    """A refusal of what the stored config builds, as the checkpoint's: one line naming the
    file (a class's own refusal, such as an unknown cell, names the setting as a command-line
    user would set it, which a checkpoint's reader cannot)."""
    try:
        yield
    except NotBuildable as exc:
        raise Malformed(path, exc.where, exc.problem) from exc
    except Malformed:
        raise
    except UserError as exc:
        raise Malformed(path, "the stored config", f"cannot be built ({exc})") from exc


def restore(
    checkpoint: dict[str, Any],
    path: Path | str = "<checkpoint>",
    user_classes: Iterable[str] | None = (),
) -> Restored:
    """Rebuild a run's DataModule and model from a checkpoint loaded by ``load_checkpoint``.
    ``user_classes`` (the current command's, never the checkpoint's) are the user's own classes
    it may build besides rnnlab's."""
    places = allowed_places(user_classes)
    check_stored(checkpoint, path, places)
    datamodule = restore_data(checkpoint, path, places)
    stored = checkpoint[CONFIG_KEY]
    with _refused_as_stored(path):
        model = build(stored["model"], "model", places)
    _load(model.load_state_dict, checkpoint["state_dict"], path, "the weights")
    return Restored(int(stored.get("seed", 0)), datamodule, model)


def restore_data(checkpoint: dict[str, Any], path: Path | str, places: Mapping[str, Place]) -> Any:
    """The DataModule of a checkpoint that ``check_stored`` passed, with its fitted state
    (checked against the config's sizes, then loaded): nothing is read from the data yet."""
    stored = checkpoint[CONFIG_KEY]
    with _refused_as_stored(path):
        datamodule = build(stored["data"], "data", places)
        state = stored_data_state(checkpoint, datamodule)
        check_data_state(state, stored, path)
    _load(datamodule.load_state_dict, state, path, "the data state")
    return datamodule


def _load(load: Any, state: Any, path: Path | str, what: str) -> None:
    """``load(state)``, a failure of which is the checkpoint's: its state was checked, so a
    class that still refuses it says what it found wrong, in one line."""
    try:
        load(state)
    except UserError:
        raise
    except KeyError as exc:
        raise Malformed(path, what, f"is not what rnnlab wrote (it lacks {exc})") from exc
    except Exception as exc:
        raise Malformed(path, what, f"is not what rnnlab wrote ({first_line(exc)})") from exc

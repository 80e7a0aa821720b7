"""Lightning's part of a checkpoint, checked before a resumed run hands it to Lightning: the epoch
and step counters, the loops' progress, the callbacks' states (early stopping, the checkpoint
callback and its file names, weight averaging), and the optimiser's and scheduler's states.

Lightning restores these without looking at them, and a value of the wrong type fails much later
(a loop counter ``'x'`` at the first step, an early-stopping ``stopped_epoch='x'`` at the first
epoch's end, an optimiser ``lr='x'`` inside ``step``) with a traceback. Each is compared here with
what Lightning or torch writes: the loops' keys and value types with a fresh trainer's loops, the
optimiser's and scheduler's with a fresh optimiser and scheduler made from the stored config,
the callbacks' with the fields Lightning's callbacks read back. A mismatch ends in one line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from packaging.version import InvalidVersion, Version
from torch import nn

from rnnlab.checkpoint.allowlist import Place
from rnnlab.checkpoint.build import build
from rnnlab.checkpoint.stored import Malformed, is_count, is_number
from rnnlab.utils.errors import first_line

Check = Callable[[Any], bool]
# the values of Lightning's EarlyStoppingReason
_STOPPING_REASONS = (0, 1, 2, 3, 4)


def check_training_state(
    checkpoint: dict[str, Any],
    path: Path | str,
    model_config: dict[str, Any],
    model: nn.Module,
    places: Mapping[str, Place],
) -> None:
    """Refuse, in one line, Lightning state of ``checkpoint`` that Lightning would fail on, or
    train on with nonsense. ``model`` is the stored config's (on the meta device: shapes)."""
    for key in ("epoch", "global_step"):
        if not is_count(checkpoint.get(key, 0)):
            raise Malformed(path, key, f"is {_shown(checkpoint.get(key))}, not a count")
    # Lightning reads it (to upgrade an older checkpoint's layout) before anything else
    version = checkpoint.get("pytorch-lightning_version")
    try:
        Version(version if isinstance(version, str) else "")
    except InvalidVersion:
        shown = "missing" if version is None else f"{_shown(version)}, not a version"
        raise Malformed(path, "pytorch-lightning_version", f"is {shown}") from None
    _check_like(checkpoint.get("loops"), _fresh_loops(), "loops", path, True, counts=True)
    _check_callbacks(checkpoint.get("callbacks", {}), path)
    _check_optimisation(checkpoint, path, model_config, model, places)


# --- loops -------------------------------------------------------------------------------------
@functools.cache
def _fresh_loops() -> dict[str, Any]:
    """The loops' state a fresh trainer writes (its keys and value types are the reference)."""
    import lightning as L

    quiet = logging.root.manager.disable
    logging.disable(logging.INFO)  # the trainer's start-up lines ("GPU available: ...")
    try:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    finally:
        logging.disable(quiet)
    return {
        "fit_loop": trainer.fit_loop.state_dict(),
        "validate_loop": trainer.validate_loop.state_dict(),
        "test_loop": trainer.test_loop.state_dict(),
        "predict_loop": trainer.predict_loop.state_dict(),
    }


def _check_like(
    value: Any,
    reference: Any,
    where: str,
    path: Path | str,
    allow_extra: bool = False,
    counts: bool = False,
) -> None:
    """``value`` has every key of ``reference``, each of the same kind (numbers where it has
    numbers, flags where it has flags, the same strings, ...), all the way down; ``counts``:
    where it has a whole number >= 0 (a loop's counter), a whole number >= 0."""
    if isinstance(reference, dict):
        if not isinstance(value, dict):
            raise Malformed(path, where, f"is {_shown(value)}, not a mapping")
        for key, expected in reference.items():
            if key not in value:
                raise Malformed(path, where, f"lacks {key!r}")
            _check_like(value[key], expected, f"{where}.{key}", path, allow_extra, counts)
        extra = [k for k in value if k not in reference]
        if extra and not allow_extra:
            raise Malformed(path, where, f"has {extra[0]!r}, which Lightning does not write")
        return
    problem = _kind_problem(value, reference, counts)
    if problem:
        raise Malformed(path, where, problem)


def _kind_problem(value: Any, reference: Any, counts: bool = False) -> str | None:
    """Why ``value`` is not of the kind of ``reference`` (None when it is)."""
    if isinstance(reference, bool):
        ok = isinstance(value, bool)
    elif isinstance(reference, int) and counts:
        ok = is_count(value)
    elif isinstance(reference, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(reference, str):
        ok = value == reference
        if not ok:
            return f"is {_shown(value)}, not {reference!r} as its settings make it"
    elif isinstance(reference, list | tuple):
        ok = isinstance(value, list | tuple) and len(value) == len(reference)
        if ok:
            found = (_kind_problem(v, r, counts) for v, r in zip(value, reference, strict=True))
            return next(filter(None, found), None)
    elif isinstance(reference, torch.Tensor):
        ok = isinstance(value, torch.Tensor) and value.shape == reference.shape
    else:
        ok = value is None if reference is None else isinstance(value, type(reference))
    return None if ok else f"is {_shown(value)}, not like {_shown(reference)}"


# --- callbacks ---------------------------------------------------------------------------------
def _scalar(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _checkpoint_name(value: Any) -> bool:
    """A path of a checkpoint file (only its name is used, beside the resumed one), or ''."""
    return isinstance(value, str) and (value == "" or Path(value).name.endswith(".ckpt"))


def _scores(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _checkpoint_name(k) and k and _scalar(v) for k, v in value.items()
    )


def _string(value: Any) -> bool:
    return isinstance(value, str)


# the fields each of Lightning's stateful callbacks reads back (required ones first), by the
# class name its state is filed under
CALLBACK_FIELDS: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    "EarlyStopping": (
        {
            "wait_count": is_count,
            "stopped_epoch": is_count,
            "best_score": _scalar,
            "patience": is_count,
        },
        {
            "stopping_reason": lambda v: is_count(v) and v in _STOPPING_REASONS,
            "stopping_reason_message": _optional(_string),
        },
    ),
    "ModelCheckpoint": (
        {"best_model_score": _optional(_scalar), "best_model_path": _checkpoint_name},
        {
            "monitor": _optional(_string),
            "current_score": _optional(_scalar),
            "dirpath": _optional(_string),
            "best_k_models": _scores,
            "kth_best_model_path": _checkpoint_name,
            "kth_value": _optional(_scalar),
            "last_model_path": _checkpoint_name,
        },
    ),
    "EMAWeights": ({"latest_update_step": is_count}, {}),
    "NonMonotoneAveraging": (
        {
            "latest_update_step": is_count,
            "history": lambda v: (
                isinstance(v, list)
                and all(isinstance(x, float) and not isinstance(x, bool) for x in v)
            ),
            "started_at_step": _optional(is_count),
        },
        {},
    ),
}


def _check_callbacks(callbacks: Any, path: Path | str) -> None:
    if not isinstance(callbacks, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in callbacks.items()
    ):
        raise Malformed(path, "callbacks", "is not a mapping of callbacks' names to states")
    for key, state in callbacks.items():
        name = key.split("{", 1)[0]
        required, optional = CALLBACK_FIELDS.get(name, ({}, {}))
        for field, check in {**required, **optional}.items():
            if field not in state:
                if field in required:
                    raise Malformed(path, f"callbacks.{name}", f"lacks {field!r}")
                continue
            if not check(state[field]):
                raise Malformed(path, f"callbacks.{name}.{field}", f"is {_shown(state[field])}")
        if name == "ModelCheckpoint":
            _check_best_files(state, path)


def _check_best_files(state: dict[str, Any], path: Path | str) -> None:
    """The best and k-th best files are among the best ones kept (Lightning looks their scores
    up there), by name, as the resume relocates them."""
    kept = {Path(p).name for p in state.get("best_k_models") or {}}
    for field in ("best_model_path", "kth_best_model_path"):
        value = state.get(field) or ""
        if kept and Path(value).name not in kept:
            raise Malformed(
                path,
                f"callbacks.ModelCheckpoint.{field}",
                f"is {_shown(value)}, none of the best checkpoints it keeps ({sorted(kept)})",
            )


# --- optimiser and scheduler -------------------------------------------------------------------
def _check_optimisation(
    checkpoint: dict[str, Any],
    path: Path | str,
    model_config: dict[str, Any],
    model: nn.Module,
    places: Mapping[str, Place],
) -> None:
    """One optimiser state whose groups are like a fresh optimiser's (same settings, numbers
    finite) and cover every parameter once, each parameter's state of its shape; one
    scheduler state like a fresh scheduler's, or none without a scheduler."""
    shapes = [p.shape for p in model.parameters()]
    try:  # the references: made as the run makes its own (a scheduler adds to the groups)
        optimizer = build(model_config.get("optimizer"), "model.optimizer", places)(
            [nn.Parameter(torch.zeros(1))]
        )
        factory = build(model_config.get("scheduler"), "model.scheduler", places)
        scheduler = None if factory is None else factory(optimizer)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise Malformed(
            path, "model.optimizer or model.scheduler", f"cannot be made ({first_line(exc)})"
        ) from exc
    states = checkpoint.get("optimizer_states")
    if not isinstance(states, list) or len(states) != 1 or not isinstance(states[0], dict):
        raise Malformed(path, "optimizer_states", "is not one optimiser's state")
    state = states[0]
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not groups:
        raise Malformed(path, "optimizer_states[0].param_groups", "is not a list of groups")
    reference = optimizer.state_dict()["param_groups"][0]
    seen: list[Any] = []
    for i, group in enumerate(groups):
        where = f"optimizer_states[0].param_groups[{i}]"
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise Malformed(path, where, "is not a parameter group")
        settings = {k: v for k, v in group.items() if k != "params"}
        _check_like(settings, {k: v for k, v in reference.items() if k != "params"}, where, path)
        bad = [k for k, v in settings.items() if isinstance(v, float) and not is_number(v)]
        if bad:
            raise Malformed(path, f"{where}.{bad[0]}", f"is {settings[bad[0]]}, not finite")
        seen += group["params"]
    every = set(range(len(shapes)))
    if len(seen) != len(shapes) or not all(is_count(i) for i in seen) or set(seen) != every:
        raise Malformed(
            path,
            "optimizer_states[0]",
            f"does not name each of the model's {len(shapes)} parameters once",
        )
    _check_parameter_states(state.get("state"), shapes, path)
    _check_scheduler(checkpoint.get("lr_schedulers"), scheduler, path)


def _check_parameter_states(states: Any, shapes: list[torch.Size], path: Path | str) -> None:
    if not isinstance(states, dict):
        raise Malformed(path, "optimizer_states[0].state", "is not a mapping")
    for index, state in states.items():
        where = f"optimizer_states[0].state[{index!r}]"
        if not is_count(index) or index >= len(shapes) or not isinstance(state, dict):
            raise Malformed(path, where, "is not the state of one of the model's parameters")
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                if value.dim() and value.shape != shapes[index]:
                    raise Malformed(
                        path,
                        f"{where}.{name}",
                        f"has shape {tuple(value.shape)}, but its "
                        f"parameter's is {tuple(shapes[index])}",
                    )
                if not value.is_floating_point():
                    raise Malformed(path, f"{where}.{name}", f"has dtype {value.dtype}")
            elif not is_number(value):
                raise Malformed(path, f"{where}.{name}", f"is {_shown(value)}, not a number")


def _check_scheduler(states: Any, scheduler: Any, path: Path | str) -> None:
    if not isinstance(states, list) or len(states) != (scheduler is not None):
        raise Malformed(path, "lr_schedulers", "does not hold one state per scheduler the run has")
    if scheduler is not None:
        _check_like(states[0], scheduler.state_dict(), "lr_schedulers[0]", path)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

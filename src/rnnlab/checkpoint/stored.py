"""What rnnlab adds to a checkpoint, checked before anything reads it: the stored config (string
keys, the seed), the epoch's metrics, and the DataModule's fitted state against that config (each
normaliser's method, shape, dtype and scale; the class list, vocabulary and series names against
the sizes the model was built with).

A checkpoint is untrusted data: ``torch.load(weights_only=True)`` gives only plain types and
tensors, but any of them may be of another type, shape or range than rnnlab wrote. Each check
raises ``Malformed`` (a ``DataError``, one line naming the file, where and what is wrong) so no
library deep inside a command fails on it later with a traceback, or computes nonsense.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rnnlab.utils.errors import DataError

TINY_SCALE = float(torch.finfo(torch.float32).tiny)  # a normaliser's smallest usable scale
# the seeds ``seed_everything`` (numpy's legacy generator) accepts
SEED_RANGE = (0, 2**32 - 1)


class Malformed(DataError):
    """A checkpoint whose stored ``where`` is ``problem``; refused before anything uses it."""

    def __init__(self, path: Path | str, where: str, problem: str) -> None:
        super().__init__(f"checkpoint {path}: {where} {problem}; refusing to load it")
        self.where, self.problem = where, problem


def is_count(value: Any, least: int = 0) -> bool:
    """A whole number (not a bool) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_config(config: Any, path: Path | str) -> None:
    """The stored run config: a mapping with string keys throughout and a usable seed."""
    if not isinstance(config, dict):
        raise Malformed(path, "the stored config", "is not a mapping")
    bad = _non_string_key(config, "config")
    if bad:
        raise Malformed(path, bad[0], f"has the key {bad[1]!r}, not a string")
    seed = config.get("seed", 0)
    low, high = SEED_RANGE
    if not is_count(seed) or not low <= seed <= high:
        raise Malformed(path, "seed", f"is {_shown(seed)}, not an integer in [{low}, {high}]")


def _non_string_key(node: Any, where: str) -> tuple[str, Any] | None:
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return where, key
            found = _non_string_key(value, f"{where}.{key}")
            if found:
                return found
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            found = _non_string_key(value, f"{where}[{i}]")
            if found:
                return found
    return None


def check_metrics(metrics: Any, path: Path | str) -> None:
    """The epoch's metrics: names and numbers (a resumed finished run reports them)."""
    if metrics is None:
        return
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str) and (_is_real(v) or _is_scalar_tensor(v)) for k, v in metrics.items()
    ):
        raise Malformed(path, "the stored metrics", "are not names with numbers")


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- the data state ----------------------------------------------------------------------------
def check_data_state(state: Any, config: dict[str, Any], path: Path | str) -> None:
    """The DataModule's fitted state against the stored config: every part rnnlab's tasks write
    (``normalizer``, ``normalizers``, ``target_normalizer``, ``train_mean``, ``classes``,
    ``series``, ``vocab``, ``sha256``, ``ngram_order``) of the type, dtype and shape the config's
    sizes give it. Parts of other tasks are theirs to check."""
    if not isinstance(state, dict):
        raise Malformed(
            path, "the data state", "is missing" if state is None else "is not a mapping"
        )
    sizes = _Sizes(config)
    for key, value in state.items():
        if not isinstance(key, str):
            raise Malformed(path, "the data state", f"has the key {key!r}, not a string")
        check = _PARTS.get(key)
        problem = check(value, sizes, state) if check else None
        if problem:
            raise Malformed(
                path, "the data state", f"is not what rnnlab wrote: its {key} {problem}"
            )


class _Sizes:
    """The sizes and settings of the stored config that the data state must agree with (None
    where the config does not say)."""

    def __init__(self, config: dict[str, Any]) -> None:
        data, model = _mapping(config.get("data")), _mapping(config.get("model"))
        encoder = _mapping(model.get("encoder"))
        self.channels = encoder.get("input_size")
        self.targets = model.get("num_targets")
        self.classes = model.get("num_classes")
        self.vocab_size = model.get("vocab_size")
        self.method = data.get("normalize")
        self.per_series = data.get("per_series")
        self.max_order = data.get("ngram_max_order")


def _mapping(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {}


def _normaliser(state: Any, channels: Any, method: Any) -> str | None:
    if not isinstance(state, dict) or set(state) != {"method", "shift", "scale"}:
        return "is not a normaliser's state (method, shift, scale)"
    if not isinstance(state["method"], str) or (method is not None and state["method"] != method):
        shown = _shown(state["method"])
        return f"has the method {shown}, but the config's data.normalize is {method!r}"
    for name in ("shift", "scale"):
        problem = _vector(state[name], channels)
        if problem:
            return f"{name} {problem}"
    if not bool((state["scale"] >= TINY_SCALE).all()):
        # dividing by a scale below float32's smallest normal number makes inputs infinite
        return f"scale holds a value below {TINY_SCALE:.3g} (every channel's must be positive)"
    return None


def _vector(value: Any, length: Any) -> str | None:
    """A float32 vector of ``length`` finite values (any length where it is None)."""
    if not isinstance(value, torch.Tensor):
        return f"is a {type(value).__name__}, not a tensor"
    if value.dtype != torch.float32:
        return f"has dtype {value.dtype}, not torch.float32"
    if value.dim() != 1 or (is_count(length) and value.shape[0] != length):
        return f"has shape {tuple(value.shape)}, not ({length},) as the model's sizes give"
    if not bool(torch.isfinite(value).all()):
        return "holds a value that is not finite"
    return None


def _strings(value: Any, count: Any, what: str) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"is not a list of {what}"
    if len(set(value)) != len(value):
        return f"names one of its {what} twice"
    if is_count(count) and len(value) != count:
        return f"holds {len(value)} {what}, but the model has {count}"
    return None


def _vocabulary(codes: Any, sizes: _Sizes, _: dict[str, Any]) -> str | None:
    if not isinstance(codes, list) or not all(
        is_count(c, 1) and c <= sys.maxunicode for c in codes
    ):
        return "is not a list of character code points"
    if len(set(codes)) != len(codes):
        return "holds a character twice"
    # id 0 is the unknown character's; the vocabulary's characters are ids 1 to len(codes)
    if is_count(sizes.vocab_size) and len(codes) + 1 != sizes.vocab_size:
        return (
            f"holds {len(codes)} characters, but the model's vocab_size is {sizes.vocab_size} "
            f"(the characters plus one unknown)"
        )
    return None


def _ngram_order(order: Any, sizes: _Sizes, _: dict[str, Any]) -> str | None:
    top = sizes.max_order if is_count(sizes.max_order, 1) else None
    if not is_count(order, 1) or (top is not None and order > top):
        return f"is {_shown(order)}, not an order from 1 to data.ngram_max_order={top}"
    return None


def _normalizers(states: Any, sizes: _Sizes, state: dict[str, Any]) -> str | None:
    if not isinstance(states, list) or not states:
        return "is not a list of normalisers' states"
    series = state.get("series")
    expected = len(series) if sizes.per_series and isinstance(series, list) else 1
    if len(states) != expected:
        return f"holds {len(states)} normalisers, not {expected}"
    for i, one in enumerate(states):
        problem = _normaliser(one, sizes.channels, sizes.method)
        if problem:
            return f"[{i}] {problem}"
    return None


_PARTS: dict[str, Callable[[Any, _Sizes, dict[str, Any]], str | None]] = {
    "normalizer": lambda v, s, _: _normaliser(v, s.channels, s.method),
    "normalizers": _normalizers,
    "target_normalizer": lambda v, s, _: _normaliser(v, s.targets, s.method),
    "train_mean": lambda v, s, _: _vector(v, s.targets),
    "classes": lambda v, s, _: _strings(v, s.classes, "classes"),
    "series": lambda v, s, _: _strings(v, None, "series names") or (None if v else "is empty"),
    "vocab": _vocabulary,
    "sha256": lambda v, s, _: None if isinstance(v, str) else "is not a string",
    "ngram_order": _ngram_order,
}

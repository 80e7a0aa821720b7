"""Seeded mutations of a genuine rnnlab checkpoint, for ``fuzz_checkpoints.py``: stored config
values (types, ranges, keys, sizes), the data state (shapes, dtypes, sizes), Lightning's state
(loops, callbacks, optimiser, scheduler), the weights, and the file's raw bytes.

Each mutation takes a ``random.Random``, the loaded checkpoint (a dict, changed in place) and the
folder the mutant may point paths at (``decoy``: files outside its run directory, which no
command may change), and returns a short description of what it did, so a failure names its
mutant. ``mutate_bytes`` works on the saved file instead.
"""

from __future__ import annotations

import io
import math
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CONFIG_KEY, DATA_KEY = "rnnlab_config", "rnnlab_data_state"
# Settings that size a model: what a resource-exhaustion mutant sets out of all proportion.
SIZE_KEYS = (
    "hidden_size",
    "num_layers",
    "input_size",
    "num_classes",
    "vocab_size",
    "embedding_size",
    "horizon",
    "num_targets",
)
HUGE = (10**7, 10**9, 3e9, 1e9, 2**31, 2**63, 2**80)
ODD_VALUES: tuple[Any, ...] = (
    "x",
    "",
    1.5,
    7,
    0,
    -1,
    -5,
    True,
    None,
    [1, 2],
    {"a": 1},
    2**80,
    float("nan"),
    float("inf"),
    -1e308,
    1e-300,
    "x" * 5000,
    "${seed}",
    "/etc/passwd",
)
NON_STRING_KEYS: tuple[Any, ...] = (1, 2.5, None, True, (1, 2))

Mutation = Callable[[random.Random, dict[str, Any], Path], str]


# --- walking a nested structure ----------------------------------------------------------------
def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (key tuples) to every non-container value of a nested dict/list."""
    if isinstance(node, dict):
        found = [p for k, v in node.items() for p in leaves(v, (*path, k))]
    elif isinstance(node, list):
        found = [p for i, v in enumerate(node) for p in leaves(v, (*path, i))]
    else:
        return [path]
    return found or [path]


def containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every dict of a nested structure (the root included)."""
    if isinstance(node, dict):
        return [path, *(p for k, v in node.items() for p in containers(v, (*path, k)))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in containers(v, (*path, i))]
    return []


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def put(node: Any, path: tuple[Any, ...], value: Any) -> None:
    get(node, path[:-1])[path[-1]] = value


def named(path: tuple[Any, ...]) -> str:
    return ".".join(str(k) for k in path) or "<root>"


# --- values ------------------------------------------------------------------------------------
def odd_value(rng: random.Random, decoy: Path) -> Any:
    value = rng.choice(ODD_VALUES)
    return str(decoy / "victim.ckpt") if value == "/etc/passwd" and rng.random() < 0.5 else value


def out_of_range(rng: random.Random, value: Any) -> Any:
    """A number near, far from, or of the opposite sign to ``value``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return rng.choice(HUGE)
    return rng.choice(
        [
            -value,
            value * 10 ** rng.randint(1, 12),
            value + rng.choice([-1, 1]),
            0,
            -1,
            5.0,
            rng.choice(HUGE),
            float(value) + 0.5,
        ]
    )


def odd_tensor(rng: random.Random, tensor: torch.Tensor) -> tuple[torch.Tensor | Any, str]:
    """A tensor of another shape, dtype or values than ``tensor`` (or no tensor at all)."""
    kind = rng.choice(["shape", "dtype", "values", "not a tensor"])
    shape = list(tensor.shape)
    if kind == "shape":
        shape = rng.choice(
            [
                [*shape[:-1], (shape[-1] if shape else 1) + rng.choice([-1, 1, 5])],
                [],
                [*shape, 2],
                [0],
                [3, 3],
                [shape[0] if shape else 1],
            ]
        )
        shape = [max(s, 0) for s in shape]
        return torch.ones(shape, dtype=tensor.dtype), f"shape {shape}"
    if kind == "dtype":
        dtype = rng.choice(
            [
                torch.float64,
                torch.float16,
                torch.int64,
                torch.bool,
                torch.complex64,
                torch.uint8,
                torch.bfloat16,
            ]
        )
        return tensor.to(dtype), f"dtype {dtype}"
    if kind == "values":
        value = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e-300, 1e38, -1e-30])
        changed = tensor.clone()
        if changed.numel():
            changed.view(-1)[rng.randrange(changed.numel())] = value
        return changed, f"a value {value}"
    replacement = rng.choice([None, "x", 1.5, [1.0, 2.0], {"a": 1}])
    return replacement, f"{replacement!r}"


def replace_leaf(rng: random.Random, root: Any, where: str, decoy: Path) -> str:
    path = rng.choice(leaves(root))
    if not path:
        return f"{where} had nothing to change"
    old = get(root, path)
    if isinstance(old, torch.Tensor):
        new, what = odd_tensor(rng, old)
    else:
        new = out_of_range(rng, old) if rng.random() < 0.4 else odd_value(rng, decoy)
        what = repr(new)[:40]
    put(root, path, new)
    return f"{where}.{named(path)} = {what}"


# --- the stored config -------------------------------------------------------------------------
def config_value(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    """Any setting of the stored config to a value of another type or range."""
    config = ckpt[CONFIG_KEY]
    part = rng.choice(["data", "model", "model", "top"])
    root = config if part == "top" else config[part]
    return replace_leaf(rng, root, "config" if part == "top" else f"config.{part}", decoy)


def config_size(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    """A setting that sizes the model, far too large (or zero, negative, fractional)."""
    config = ckpt[CONFIG_KEY]
    found = [p for p in leaves(config["model"]) if p and p[-1] in SIZE_KEYS]
    path = rng.choice(found)
    value = rng.choice([*HUGE, *HUGE, 0, -3, 2.5, get(config["model"], path) + 1])
    put(config["model"], path, value)
    return f"config.model.{named(path)} = {value!r}"


def config_key(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    """A key added (a string or not), removed or renamed, anywhere in the stored config."""
    config = ckpt[CONFIG_KEY]
    path = rng.choice(containers(config))
    node = get(config, path)
    action = rng.choice(["add", "non-string", "remove", "rename"])
    if action in ("remove", "rename") and node:
        key = rng.choice(list(node))
        value = node.pop(key)
        if action == "rename":
            node[f"{key}_"] = value
        return f"config.{named(path)}: {action} {key!r}"
    key = rng.choice(NON_STRING_KEYS) if action == "non-string" else "unexpected_setting"
    node[key] = odd_value(rng, decoy)
    return f"config.{named(path)}: add key {key!r}"


def seed(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    config = ckpt[CONFIG_KEY]
    value = rng.choice([-5, 2**80, 2**32, 2**32 - 1, "x", 1.5, True, None, 0])
    where = rng.choice([("seed",), ("data", "seed")])
    put(config, where, value)
    return f"config.{named(where)} = {value!r}"


# --- the data state ----------------------------------------------------------------------------
def data_state(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    state = ckpt[DATA_KEY]
    action = rng.choice(["leaf", "leaf", "leaf", "list", "key", "whole"])
    if action == "whole":
        ckpt[DATA_KEY] = rng.choice([None, [], "x", {}, {"x": 1}])
        return f"data state = {ckpt[DATA_KEY]!r}"
    if action == "key":
        path = rng.choice(containers(state))
        node = get(state, path)
        if node and rng.random() < 0.6:
            key = rng.choice(list(node))
            del node[key]
            return f"data state.{named(path)}: remove {key!r}"
        node[rng.choice(["extra", 1, None])] = 1
        return f"data state.{named(path)}: add a key"
    if action == "list":
        lists = [p for p in _list_paths(state) if get(state, p)]
        if lists:
            path = rng.choice(lists)
            items = get(state, path)
            change = rng.choice(["drop", "add", "duplicate", "odd item"])
            if change == "drop":
                items.pop(rng.randrange(len(items)))
            elif change == "add":
                items.append(
                    type(items[0])(rng.choice([120, 9999, 65]))
                    if isinstance(items[0], int | str)
                    else items[0]
                )
            elif change == "duplicate":
                items.append(items[rng.randrange(len(items))])
            else:
                items[rng.randrange(len(items))] = odd_value(rng, decoy)
            return f"data state.{named(path)}: {change}"
    return replace_leaf(rng, state, "data state", decoy)


def scale_zero(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    """A normaliser's scale with a zero (or negative, non-finite) entry."""
    paths = [p for p in leaves(ckpt[DATA_KEY]) if p and p[-1] == "scale"]
    if not paths:
        return data_state(rng, ckpt, decoy)
    path = rng.choice(paths)
    scale = get(ckpt[DATA_KEY], path).clone()
    scale.view(-1)[rng.randrange(scale.numel())] = rng.choice([0.0, -1.0, float("nan"), 1e-45])
    put(ckpt[DATA_KEY], path, scale)
    return f"data state.{named(path)} with {scale.tolist()[:3]}"


def _list_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _list_paths(v, (*path, k))]
    if isinstance(node, list):
        return [path, *(p for i, v in enumerate(node) for p in _list_paths(v, (*path, i)))]
    return []


# --- Lightning's state -------------------------------------------------------------------------
def lightning_state(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    """A leaf of the loops, callbacks, optimiser or scheduler state, or a whole entry."""
    key = rng.choice(
        [
            "loops",
            "callbacks",
            "callbacks",
            "optimizer_states",
            "lr_schedulers",
            "epoch",
            "global_step",
        ]
    )
    if rng.random() < 0.15 or not isinstance(ckpt.get(key), dict | list):
        ckpt[key] = rng.choice([[1, 2], "x", None, {}, -1, 2**80, {"x": 1}])
        return f"{key} = {ckpt[key]!r}"
    return replace_leaf(rng, ckpt[key], key, decoy)


def checkpoint_paths(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    """The checkpoint callback's paths pointed elsewhere: system files, the decoy folder,
    another directory, a relative escape."""
    callbacks = ckpt["callbacks"]
    key = next(k for k in callbacks if str(k).startswith("ModelCheckpoint"))
    state = callbacks[key]
    field = rng.choice(
        ["best_model_path", "kth_best_model_path", "last_model_path", "dirpath", "best_k_models"]
    )
    target = rng.choice(
        [
            "/etc/passwd",
            str(decoy / "victim.ckpt"),
            str(decoy),
            "../../x.ckpt",
            "",
            "best.ckpt",
            str(decoy / "missing.ckpt"),
        ]
    )
    if field == "best_k_models":
        state[field] = {target: torch.tensor(0.5)}
    else:
        state[field] = target
    return f"ModelCheckpoint.{field} = {target!r}"


# --- the weights and the file as a whole -------------------------------------------------------
def weights(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    state = ckpt["state_dict"]
    name = rng.choice(list(state))
    action = rng.choice(["tensor", "tensor", "remove", "add", "whole"])
    if action == "remove":
        del state[name]
        return f"weights: remove {name}"
    if action == "add":
        state[f"{name}_extra"] = torch.zeros(2)
        return f"weights: add {name}_extra"
    if action == "whole":
        ckpt["state_dict"] = rng.choice([None, [], {}, "x"])
        return f"weights = {ckpt['state_dict']!r}"
    new, what = odd_tensor(rng, state[name])
    state[name] = new
    return f"weights.{name}: {what}"


def top_level(rng: random.Random, ckpt: dict[str, Any], decoy: Path) -> str:
    key = rng.choice(
        [
            CONFIG_KEY,
            DATA_KEY,
            "rnnlab_format",
            "rnnlab_epoch_metrics",
            "state_dict",
            "pytorch-lightning_version",
        ]
    )
    if rng.random() < 0.4:
        ckpt.pop(key, None)
        return f"remove {key}"
    ckpt[key] = odd_value(rng, decoy)
    return f"{key} = {ckpt[key]!r}"[:80]


MUTATIONS: dict[str, Mutation] = {
    "config value": config_value,
    "config size": config_size,
    "config key": config_key,
    "seed": seed,
    "data state": data_state,
    "data scale": scale_zero,
    "lightning state": lightning_state,
    "checkpoint paths": checkpoint_paths,
    "weights": weights,
    "top level": top_level,
}


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """The saved file changed at the byte level: its first bytes, a random stretch, cut short,
    or the pickle inside the zip changed (with the zip kept valid, so the unpickler reads it)."""
    action = rng.choice(
        ["first bytes", "random bytes", "truncate", "pickle bytes", "pickle bytes", "empty"]
    )
    if action == "empty":
        return b"", "an empty file"
    if action == "truncate":
        cut = rng.randrange(len(data))
        return data[:cut], f"cut at byte {cut}"
    if action == "pickle bytes":
        return _mutated_pickle(rng, data)
    changed = bytearray(data)
    start = 0 if action == "first bytes" else rng.randrange(len(data))
    count = rng.randint(1, 8)
    for i in range(start, min(start + count, len(data))):
        changed[i] = rng.randrange(256)
    return bytes(changed), f"{action}: {count} at {start}"


def _mutated_pickle(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    names = source.namelist()
    pickled = next(n for n in names if n.endswith("data.pkl"))
    changed = bytearray(source.read(pickled))
    where = []
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(changed))
        changed[i] = rng.randrange(256)
        where.append(i)
    # torch's reader wants the records stored, 64-byte aligned as torch.save writes them: keep
    # every entry's bytes and order, replacing only the pickle's
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for name in names:
            target.writestr(
                source.getinfo(name), bytes(changed) if name == pickled else source.read(name)
            )
    return out.getvalue(), f"pickle bytes changed at {where}"


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

"""The stored weights against the model the stored config describes, before any memory is spent
on that model: a config that says ``hidden_size=10**7`` beside weights of 16 units would
otherwise allocate gigabytes (and spend minutes initialising them) only to fail when the weights
are loaded.

Two steps, both cheap: each setting a class declares as a size (``size_settings``, e.g. the
encoder's ``hidden_size`` and ``num_layers``, the classifier's ``num_classes``) must be a whole
number no larger than the count of numbers the stored weights hold, since every size is a
dimension of some weight (this bounds the loops a constructor runs, such as one per layer); then
the model is built on PyTorch's ``meta`` device, which allocates nothing, and its weights' names,
shapes and dtypes are compared with the stored ones. Only a checkpoint that passes both is built
for real.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlab.checkpoint.allowlist import Place
from rnnlab.checkpoint.build import build
from rnnlab.checkpoint.stored import Malformed, is_count

SIZES_ATTRIBUTE = "size_settings"  # a model class's settings that size its weights


def check_weights(
    weights: Any, model_config: Any, places: Mapping[str, Place], path: Path | str, what: str
) -> nn.Module:
    """Refuse ``weights`` (``what``: where they are stored) unless they are exactly those of the
    model ``model_config`` describes (already checked against the allow-list); that model,
    built on the meta device (no memory: shapes only)."""
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise Malformed(path, what, "are not a mapping of names to tensors")
    numbers = sum(tensor.numel() for tensor in weights.values())
    for where, node, cls in built_nodes(model_config, "model", places):
        for key in getattr(cls, SIZES_ATTRIBUTE, ()):
            if key in node:
                _check_size(node[key], f"{where}.{key}", numbers, path)
    with torch.device("meta"):
        model = build(model_config, "model", places)
    expected = model.state_dict()
    missing = [name for name in expected if name not in weights]
    if missing:
        raise Malformed(path, what, f"lack {missing[0]!r}, which the stored model config has")
    unexpected = [name for name in weights if name not in expected]
    if unexpected:
        raise Malformed(path, what, f"hold {unexpected[0]!r}, which the stored model config lacks")
    for name, tensor in weights.items():
        want = expected[name]
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            raise Malformed(
                path,
                f"{what}' {name}",
                f"is {tuple(tensor.shape)} {tensor.dtype}, but the stored model config makes it "
                f"{tuple(want.shape)} {want.dtype}",
            )
    return model


def _check_size(value: Any, where: str, numbers: int, path: Path | str) -> None:
    """A size: a whole number >= 1 (or a list of them), at most ``numbers``."""
    for size in value if isinstance(value, list | tuple) else [value]:
        if not is_count(size, 1):
            raise Malformed(path, where, f"is {size!r}, not a whole number >= 1")
        if size > numbers:
            raise Malformed(
                path,
                where,
                f"is {size}, more than the {numbers} numbers the stored weights hold (a size "
                "of the model is a dimension of its weights)",
            )


def built_nodes(
    node: Any, place: str, places: Mapping[str, Place]
) -> Iterator[tuple[str, dict[str, Any], type]]:
    """Each object the config builds under ``place``: where, its settings and its class."""
    spec = places.get(place)
    if spec is None or not isinstance(node, dict):
        return
    cls = spec.classes.get(node.get("_target_"))  # type: ignore[arg-type]
    if cls is not None:
        yield place, node, cls
    for key, value in node.items():
        if f"{place}.{key}" in places:
            yield from built_nodes(value, f"{place}.{key}", places)

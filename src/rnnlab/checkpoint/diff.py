"""Where two stored values first differ: one walk for every comparison of checkpoints' contents
(a resumed run's config against the checkpoint's, an ensemble's members against each other);
each caller words the difference for its own message."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import torch


@dataclass(frozen=True)
class Difference:
    """The first place two values differ, and the values there."""

    where: str  # dotted, with [i] for list entries: "data.target_columns[0]"
    first: Any  # the value compared against (the checkpoint's, member 0's)
    other: Any  # the value compared with it (the current run's, another member's)
    kind: Literal["value", "length", "tensor"]  # plain values, list lengths, tensors differ


def first_difference(
    first: Any, other: Any, where: str, skip: Collection[str] = ()
) -> Difference | None:
    """Where ``first`` and ``other`` (configs, data states: mappings, lists, tensors, plain
    values) first differ, mapping keys in sorted order and lists entry by entry; None when they
    do not. Paths in ``skip`` (dotted, as ``where`` names them) are not compared."""
    if isinstance(first, dict) and isinstance(other, dict):
        for key in sorted(set(first) | set(other), key=str):
            path = f"{where}.{key}"
            if path in skip:
                continue
            found = first_difference(first.get(key), other.get(key), path, skip)
            if found:
                return found
        return None
    if isinstance(first, list | tuple) and isinstance(other, list | tuple):
        if len(first) != len(other):
            return Difference(where, first, other, "length")
        for i, (a, b) in enumerate(zip(first, other, strict=True)):
            found = first_difference(a, b, f"{where}[{i}]", skip)
            if found:
                return found
        return None
    if isinstance(first, torch.Tensor) or isinstance(other, torch.Tensor):
        same = (
            isinstance(first, torch.Tensor)
            and isinstance(other, torch.Tensor)
            and first.shape == other.shape
            and bool(torch.equal(first, other))
        )
        return None if same else Difference(where, first, other, "tensor")
    if first != other:
        return Difference(where, first, other, "value")
    return None

"""One builder for training and loading: a run config's ``data`` and ``model``, checked against
the allow-list (``allowlist.py``) and then built from it.

Training builds its own config this way, and ``restore`` a checkpoint's stored one, so what a run
trains is what its checkpoints load, and a class that could not be loaded is refused before
training rather than at evaluation. A checkpoint is data: the checks accept, at each place, only
a ``_target_`` equal to one the allow-list holds for that place, keyword arguments the class
declares, and plain values (numbers, strings, booleans, null, lists of those) that hold no
interpolation. The class is then called directly: nothing is looked up by a dotted path,
resolved or passed to Hydra's ``instantiate`` (whose ``locate`` follows module attributes, so a
prefix test would let ``rnnlab.x.os.system`` through).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.checkpoint.allowlist import USER_CLASSES, Place
from rnnlab.utils.errors import ConfigError, UserError, first_line

PARTS = ("data", "model")  # what a run config builds; everything else is run settings


class NotBuildable(ConfigError):
    """A config node the allow-list does not let be built: where (a dotted key), and why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where} {problem}")
        self.where, self.problem = where, problem


def check(node: Any, place: str, places: Mapping[str, Place]) -> None:
    """Refuse ``node`` at ``place`` unless every object in it is allowed where it stands, with
    settings its class takes, holding plain values."""
    spec = places[place]
    if node is None and spec.optional:
        return
    if not isinstance(node, dict):
        raise NotBuildable(place, "is not a mapping")
    target = node.get("_target_")
    if not isinstance(target, str) or target not in spec.classes:
        allowed = ", ".join(sorted(spec.classes))
        if spec.takes_user_classes:
            allowed += f" (or a class of your own listed in {USER_CLASSES})"
        raise NotBuildable(f"{place}._target_", f"is {target!r}, not one of {allowed}")
    settings = _settings(spec.classes[target])
    for key, value in node.items():
        where = f"{place}.{key}"
        if key == "_target_" or (key == "_partial_" and spec.partial and value is True):
            continue
        if where in places:  # an object of its own, such as the model's encoder
            check(value, where, places)
        elif (
            not isinstance(key, str)
            or key.startswith("_")  # Hydra's flags: _args_, _convert_, _recursive_, ...
            or key not in settings
            or key in spec.supplied
        ):
            raise NotBuildable(where, f"is not a setting of {target}")
        else:
            _check_plain(value, where)
    if spec.partial and node.get("_partial_") is not True:
        raise NotBuildable(place, "must be a partial (_partial_: true)")


def build(node: Any, place: str, places: Mapping[str, Place]) -> Any:
    """The object ``node`` describes at ``place``, once ``check`` accepts it: its allowed class
    called with its settings (a partial where the place takes one; None where it is off)."""
    check(node, place, places)
    return _construct(node, place, places)


def build_part(cfg: DictConfig, part: str, places: Mapping[str, Place]) -> Any:
    """The object at ``cfg[part]`` of a run's own config: resolved to plain values (what its
    checkpoints store), then built as a checkpoint's would be."""
    node = OmegaConf.to_container(cfg[part], resolve=True, throw_on_missing=True)
    return build(node, part, places)


def _construct(node: Any, place: str, places: Mapping[str, Place]) -> Any:
    if node is None:
        return None
    spec = places[place]
    cls = spec.classes[node["_target_"]]
    kwargs = {
        key: _construct(value, f"{place}.{key}", places) if f"{place}.{key}" in places else value
        for key, value in node.items()
        if not key.startswith("_")
    }
    if spec.partial:
        return functools.partial(cls, **kwargs)
    try:
        return cls(**kwargs)
    except UserError:  # the class's own one-line refusal, such as an unknown cell
        raise
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        # e.g. a required argument missing, a value of the wrong type or out of range (a
        # dropout of 5.0), refused by the class or the torch module it builds
        raise NotBuildable(place, f"cannot be built ({first_line(exc)})") from exc


def _check_plain(value: Any, where: str) -> None:
    """Scalars and lists of scalars only; no mappings, no interpolations."""
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, list | tuple | dict):
                raise NotBuildable(f"{where}[{i}]", "nests a list or mapping inside a list")
            _check_plain(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        raise NotBuildable(where, "is a mapping where a plain value belongs")
    elif isinstance(value, str) and "${" in value:
        raise NotBuildable(where, f"holds an interpolation ({value!r})")
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise NotBuildable(where, f"holds a {type(value).__name__}, not a plain value")


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

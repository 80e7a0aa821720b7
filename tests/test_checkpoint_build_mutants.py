"""Fast in-process checks of what a loaded config may build: the allow-list (``allowlist.py``)
and the builder (``build.py``), called directly on rnnlab's places and on small stand-in
classes, with the exact names allowed and refused and the exact words of each refusal (so
scripts/mutation.py finds a changed operator, constant or argument in either module)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rnnlab.checkpoint.allowlist import Place, _is_subclass, allowed_places
from rnnlab.checkpoint.build import NotBuildable, build, build_part, check
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError, DataError
from tests.own_classes import OwnEncoder, OwnVowels

HERE = __name__


class OwnModel(SequenceClassifier):
    """A LightningModule of the user's."""


# --- allowlist.py -------------------------------------------------------------------------------
def test_the_places_and_how_each_builds():
    places = allowed_places()
    assert list(places) == ["data", "model", "model.encoder", "model.optimizer", "model.scheduler"]
    for own in ("data", "model", "model.encoder"):
        assert places[own].takes_user_classes and not places[own].partial
        assert not places[own].optional and places[own].supplied == frozenset()
    optimizer, scheduler = places["model.optimizer"], places["model.scheduler"]
    assert optimizer.partial and not optimizer.optional and not optimizer.takes_user_classes
    assert optimizer.supplied == frozenset({"params"})
    assert scheduler.partial and scheduler.optional and not scheduler.takes_user_classes
    assert scheduler.supplied == frozenset({"optimizer"})
    assert allowed_places(None)["data"].classes == places["data"].classes


def test_rnnlab_classes_are_theirs_by_exact_name():
    places = allowed_places()
    assert places["data"].classes["rnnlab.data.classification.ClassificationDataModule"] is (
        ClassificationDataModule
    )
    assert places["model"].classes["rnnlab.models.classifier.SequenceClassifier"] is (
        SequenceClassifier
    )
    assert places["model.encoder"].classes["rnnlab.models.encoder.RNNEncoder"] is RNNEncoder
    for place in ("data", "model", "model.encoder"):
        for target, cls in places[place].classes.items():
            assert f"{cls.__module__}.{cls.__qualname__}" == target


def test_torch_optimisers_by_public_name_and_never_the_base():
    classes = allowed_places()["model.optimizer"].classes
    for name in ("SGD", "Adam", "AdamW", "RMSprop"):
        assert classes[f"torch.optim.{name}"] is getattr(torch.optim, name)
    assert "torch.optim.Optimizer" not in classes
    assert all(
        issubclass(c, torch.optim.Optimizer) and t == f"torch.optim.{c.__name__}"
        for t, c in classes.items()
    )


def test_torch_schedulers_that_plain_values_can_build():
    classes = allowed_places()["model.scheduler"].classes
    schedulers = torch.optim.lr_scheduler
    for name in ("StepLR", "CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau"):
        assert classes[f"torch.optim.lr_scheduler.{name}"] is getattr(schedulers, name)
    for name in ("LambdaLR", "MultiplicativeLR", "ChainedScheduler", "SequentialLR", "LRScheduler"):
        assert f"torch.optim.lr_scheduler.{name}" not in classes, name
    assert all(t == f"torch.optim.lr_scheduler.{c.__name__}" for t, c in classes.items())


def test_is_subclass_means_a_proper_subclass():
    assert _is_subclass(bool, int)
    assert not _is_subclass(int, int)
    assert not _is_subclass(str, int)
    assert not _is_subclass(True, int)


def test_user_classes_go_where_their_kind_is_built():
    data, encoder, model = (
        "tests.own_classes.OwnVowels",
        "tests.own_classes.OwnEncoder",
        f"{HERE}.OwnModel",
    )
    places = allowed_places([data, encoder, model])
    assert places["data"].classes[data] is OwnVowels
    assert places["model.encoder"].classes[encoder] is OwnEncoder
    assert places["model"].classes[model] is OwnModel
    assert data not in places["model"].classes and model not in places["model.encoder"].classes
    assert encoder not in places["model"].classes and model not in places["data"].classes
    assert data not in allowed_places()["data"].classes


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("a.B", "user_classes=a.B is not a list; write user_classes=[a.B]"),
        (["Vowels"], "user_classes: 'Vowels' is not a dotted path such as pkg.module.Class"),
        (["tests.own_classes."], "user_classes: 'tests.own_classes.' is not a dotted path"),
        (
            ["no_such_package_x.A"],
            "user_classes: cannot import no_such_package_x for 'no_such_package_x.A' "
            "(No module named 'no_such_package_x')",
        ),
        (
            ["tests.own_classes.Missing"],
            "user_classes: 'tests.own_classes.Missing' names nothing in tests.own_classes",
        ),
        (
            ["tests.own_classes.not_a_class"],
            "user_classes: 'tests.own_classes.not_a_class' is a function, not a class",
        ),
        (
            ["tests.own_classes.NotBuilt"],
            "user_classes: 'tests.own_classes.NotBuilt' is not a LightningDataModule, "
            "LightningModule or torch.nn.Module, the classes a run builds (at data, model and "
            "model.encoder)",
        ),
    ],
)
def test_user_classes_that_cannot_be_built_are_refused_in_words(listed, message):
    with pytest.raises(ConfigError) as refused:
        allowed_places(listed)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_a_user_class_that_fails_to_import_keeps_the_cause():
    with pytest.raises(ConfigError) as refused:
        allowed_places(["no_such_package_x.A"])
    assert isinstance(refused.value.__cause__, ImportError)
    assert str(refused.value).endswith("(No module named 'no_such_package_x')")


# --- build.py, on stand-in classes --------------------------------------------------------------
class Thing:
    def __init__(self, size: int, name: str = "a", items: Any = None, _private: int = 0) -> None:
        self.size, self.name, self.items = size, name, items


class Loose(Thing):
    def __init__(self, *args: Any, extra: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extra = extra


class Plain(Thing):
    """No ``__init__`` of its own: its base's settings."""


class Strict(Thing):
    def __init__(self, only: int = 1) -> None:
        super().__init__(size=only)


class Refusing:
    def __init__(self, error: str) -> None:
        raise {
            "type": TypeError("wrong type\nsecond line"),
            "value": ValueError("bad value."),
            "overflow": OverflowError("too big"),
            "runtime": RuntimeError("torch says no"),
            "user": DataError("data.x is wrong; set data.x=1"),
            "key": KeyError("k"),
        }[error]


class Opt:
    def __init__(self, params: Any, lr: float = 0.1) -> None:
        self.params, self.lr = params, lr


class Holder:
    def __init__(self, part: Any, opt: Any = None, rate: float = 0.1) -> None:
        self.part, self.opt, self.rate = part, opt, rate


THINGS = {"x.Thing": Thing, "x.Loose": Loose, "x.Plain": Plain, "x.Strict": Strict}
PLACES = {
    "top": Place({"x.Holder": Holder}, takes_user_classes=True),
    "top.part": Place({**THINGS, "x.Refusing": Refusing}),
    "top.opt": Place({"x.Opt": Opt}, partial=True, optional=True, supplied=frozenset({"params"})),
}


def _node(**part: Any) -> dict[str, Any]:
    return {
        "_target_": "x.Holder",
        "part": {"_target_": "x.Thing", "size": 3, **part},
        "opt": {"_target_": "x.Opt", "_partial_": True, "lr": 0.5},
        "rate": 0.25,
    }


def _refusal(node: Any, place: str = "top") -> NotBuildable:
    with pytest.raises(NotBuildable) as refused:
        check(node, place, PLACES)
    return refused.value


def test_not_buildable_says_where_and_what():
    error = NotBuildable("a.b", "is wrong")
    assert str(error) == "a.b is wrong" and (error.where, error.problem) == ("a.b", "is wrong")
    assert isinstance(error, ConfigError)


def test_an_allowed_node_builds_its_objects_with_their_settings():
    built = build(_node(name="n", items=[1, 2.5, "s", None, True]), "top", PLACES)
    assert type(built) is Holder and built.rate == 0.25
    assert type(built.part) is Thing and (built.part.size, built.part.name) == (3, "n")
    assert built.part.items == [1, 2.5, "s", None, True]
    assert isinstance(built.opt, functools.partial) and built.opt.func is Opt
    assert built.opt.keywords == {"lr": 0.5} and built.opt.args == ()
    assert build(None, "top.opt", PLACES) is None
    node = _node()
    node["opt"] = None
    assert build(node, "top", PLACES).opt is None


def test_a_missing_object_is_no_mapping_unless_its_place_is_optional():
    check(None, "top.opt", PLACES)
    assert str(_refusal(None, "top.part")) == "top.part is not a mapping"
    assert str(_refusal(["x.Thing"], "top.part")) == "top.part is not a mapping"


@pytest.mark.parametrize(
    ("target", "shown"), [("x.Other", "'x.Other'"), (None, "None"), (["x.Thing"], "['x.Thing']")]
)
def test_a_target_not_allowed_at_its_place_is_refused_naming_the_allowed(target, shown):
    refused = _refusal({"_target_": target, "size": 1}, "top.part")
    assert refused.where == "top.part._target_"
    allowed = "x.Loose, x.Plain, x.Refusing, x.Strict, x.Thing"
    assert refused.problem == f"is {shown}, not one of {allowed}"
    nested = _refusal({**_node(), "part": {"_target_": target}})
    assert nested.where == "top.part._target_"
    top = _refusal({"_target_": "x.Thing"})
    assert str(top) == (
        "top._target_ is 'x.Thing', not one of x.Holder (or a class of your own listed in "
        "user_classes)"
    )


@pytest.mark.parametrize(
    ("edit", "where", "setting_of"),
    [
        ({"callback": 1}, "top.part.callback", "x.Thing"),
        ({"_private": 1}, "top.part._private", "x.Thing"),
        ({"_args_": [1]}, "top.part._args_", "x.Thing"),
        ({"self": 1}, "top.part.self", "x.Thing"),
        ({"_partial_": True}, "top.part._partial_", "x.Thing"),
        ({1: 2}, "top.part.1", "x.Thing"),
        ({"_target_": "x.Strict", "size": 2}, "top.part.size", "x.Strict"),
    ],
)
def test_keys_the_class_does_not_take_are_refused(edit, where, setting_of):
    node = _node()
    node["part"].update(edit)
    refused = _refusal(node)
    assert (refused.where, refused.problem) == (where, f"is not a setting of {setting_of}")


def test_settings_follow_keyword_arguments_to_the_base_class():
    build({**_node(), "part": {"_target_": "x.Loose", "extra": 2, "size": 5}}, "top", PLACES)
    loose = build({"_target_": "x.Loose", "extra": 2, "size": 5}, "top.part", PLACES)
    assert (loose.extra, loose.size) == (2, 5)
    assert build({"_target_": "x.Plain", "size": 4}, "top.part", PLACES).size == 4
    assert build({"_target_": "x.Strict", "only": 6}, "top.part", PLACES).size == 6
    for variadic in ("args", "kwargs"):
        refused = _refusal({"_target_": "x.Loose", variadic: 1}, "top.part")
        assert refused.where == f"top.part.{variadic}"


@pytest.mark.parametrize(
    ("opt", "where", "problem"),
    [
        ({"_target_": "x.Opt", "lr": 0.5}, "top.opt", "must be a partial (_partial_: true)"),
        (
            {"_target_": "x.Opt", "_partial_": False},
            "top.opt._partial_",
            "is not a setting of x.Opt",
        ),
        ({"_target_": "x.Opt", "_partial_": 1}, "top.opt._partial_", "is not a setting of x.Opt"),
        (
            {"_target_": "x.Opt", "_partial_": True, "params": []},
            "top.opt.params",
            "is not a setting of x.Opt",
        ),
    ],
)
def test_a_partial_place_takes_partials_without_the_supplied_arguments(opt, where, problem):
    refused = _refusal({**_node(), "opt": opt})
    assert (refused.where, refused.problem) == (where, problem)


@pytest.mark.parametrize(
    ("value", "where", "problem"),
    [
        ([1, [2]], "top.part.items[1]", "nests a list or mapping inside a list"),
        ((1, (2,)), "top.part.items[1]", "nests a list or mapping inside a list"),
        ([{"a": 1}], "top.part.items[0]", "nests a list or mapping inside a list"),
        ({"_target_": "os.system"}, "top.part.items", "is a mapping where a plain value belongs"),
        ("${oc.env:HOME}", "top.part.items", "holds an interpolation ('${oc.env:HOME}')"),
        (["a", "x${y}"], "top.part.items[1]", "holds an interpolation ('x${y}')"),
        (b"bytes", "top.part.items", "holds a bytes, not a plain value"),
        ([1, b"b"], "top.part.items[1]", "holds a bytes, not a plain value"),
        (torch.ones(1), "top.part.items", "holds a Tensor, not a plain value"),
    ],
)
def test_values_must_be_plain(value, where, problem):
    refused = _refusal(_node(items=value))
    assert (refused.where, refused.problem) == (where, problem)


@pytest.mark.parametrize("value", [None, True, 0, -1.5, "$x", "{y}", "", [], [None, 1, "a", 2.0]])
def test_plain_values_pass(value):
    check(_node(items=value), "top", PLACES)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ("type", "wrong type"),
        ("value", "bad value"),
        ("overflow", "too big"),
        ("runtime", "torch says no"),
    ],
)
def test_a_class_that_refuses_its_settings_is_refused_in_one_line(error, said):
    with pytest.raises(NotBuildable) as refused:
        build({"_target_": "x.Refusing", "error": error}, "top.part", PLACES)
    assert refused.value.where == "top.part"
    assert refused.value.problem == f"cannot be built ({said})"
    assert refused.value.__cause__ is not None


def test_a_class_own_user_error_is_kept_and_others_pass_through():
    with pytest.raises(DataError, match=r"^data\.x is wrong; set data\.x=1$"):
        build({"_target_": "x.Refusing", "error": "user"}, "top.part", PLACES)
    with pytest.raises(KeyError):
        build({"_target_": "x.Refusing", "error": "key"}, "top.part", PLACES)


def test_a_refused_node_is_never_built():
    with pytest.raises(NotBuildable, match=r"top\.part\.callback"):
        build(_node(callback=1), "top", PLACES)


def test_build_part_resolves_the_runs_own_config_and_refuses_missing_values():
    cfg = OmegaConf.create({"n": 4, "top": {**_node(), "rate": "${n}"}})
    assert build_part(cfg, "top", PLACES).rate == 4
    with pytest.raises(MissingMandatoryValue):
        build_part(OmegaConf.create({"top": {**_node(), "rate": "???"}}), "top", PLACES)

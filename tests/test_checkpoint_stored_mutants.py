"""Fast in-process checks of what a loaded checkpoint is checked against before anything is
built: the stored config, metrics and data state (``stored.py``), the weights against the
model the config describes (``weights.py``) and the rebuilding that runs those checks
(``rebuild.py``). Each calls a function directly, on the committed format-1 fixture (a
17 KB checkpoint) or on hand-made values, and checks the exact outcome: what is accepted, and
each refusal's words (so scripts/mutation.py finds a changed operator, constant or argument)."""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnlab.checkpoint import CONFIG_KEY, DATA_KEY, METRICS_KEY, allowed_places, load_checkpoint
from rnnlab.checkpoint.build import NotBuildable
from rnnlab.checkpoint.rebuild import Restored, _load, _refused_as_stored, check_stored, restore
from rnnlab.checkpoint.resume import _added_since, _defaults
from rnnlab.checkpoint.stored import (
    TINY_SCALE,
    Malformed,
    _Sizes,
    check_config,
    check_data_state,
    check_metrics,
    is_count,
    is_number,
)
from rnnlab.checkpoint.weights import _check_size, built_nodes, check_weights
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.encoder import RNNEncoder
from rnnlab.utils.errors import ConfigError, DataError
from tests.own_classes import OwnEncoder

FORMAT1 = Path(__file__).parent / "fixtures" / "checkpoint_format1.ckpt"
P = "p.ckpt"  # the path the refusals name


@pytest.fixture(scope="module")
def genuine() -> dict[str, Any]:
    return load_checkpoint(FORMAT1)


@pytest.fixture
def checkpoint(genuine) -> dict[str, Any]:
    """A copy of the fixture to tamper with."""
    return copy.deepcopy(genuine)


def _said(where: str, problem: str) -> str:
    return f"checkpoint {P}: {where} {problem}; refusing to load it"


def _refused(call: Any, *args: Any) -> str:
    with pytest.raises(Malformed) as refused:
        call(*args)
    assert "\n" not in str(refused.value)
    return str(refused.value)


# --- stored.py: the config and the metrics ------------------------------------------------------
def test_malformed_names_the_file_where_and_what():
    error = Malformed(P, "the x", "is y")
    assert str(error) == _said("the x", "is y") and (error.where, error.problem) == (
        "the x",
        "is y",
    )
    assert isinstance(error, DataError)


def test_counts_and_numbers():
    assert is_count(0) and is_count(5, 5) and is_count(2**40)
    assert not is_count(-1) and not is_count(4, 5) and not is_count(True) and not is_count(1.0)
    assert is_count(1, least=1) and not is_count(0, least=1)
    assert is_number(1) and is_number(-2.5) and is_number(0)
    for value in (True, float("nan"), float("inf"), float("-inf"), "1", None):
        assert not is_number(value), value


@pytest.mark.parametrize(
    ("config", "where", "key"),
    [
        ({1: 0}, "config", "1"),
        ({"model": {"encoder": {"a": 1, 2: 0}}}, "config.model.encoder", "2"),
        ({"a": {"b": 1}, "c": {"d": [0, {None: 1}]}}, "config.c.d[1]", "None"),
        ({"a": [{"b": 1}], "c": ({"x": 1}, {2.5: 1})}, "config.c[1]", "2.5"),
    ],
)
def test_a_key_that_is_no_string_is_refused_where_it_stands(config, where, key):
    assert _refused(check_config, config, P) == _said(where, f"has the key {key}, not a string")


@pytest.mark.parametrize("config", [None, [], "x"])
def test_a_stored_config_that_is_no_mapping_is_refused(config):
    assert _refused(check_config, config, P) == _said("the stored config", "is not a mapping")


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, "absent"])
def test_seeds_numpy_accepts_pass(seed):
    check_config({} if seed == "absent" else {"seed": seed, "a": {"b": [1]}}, P)


@pytest.mark.parametrize(
    ("seed", "shown"),
    [
        (-1, "-1"),
        (2**32, "4294967296"),
        (True, "True"),
        (1.0, "1.0"),
        ("x" * 38, repr("x" * 38)),  # a repr of 40 characters, shown whole
        ("x" * 39, repr("x" * 39)[:37] + "..."),
        (None, "None"),
    ],
)
def test_a_seed_numpy_refuses_is_refused(seed, shown):
    assert _refused(check_config, {"seed": seed}, P) == _said(
        "seed", f"is {shown}, not an integer in [0, 4294967295]"
    )


@pytest.mark.parametrize(
    "metrics",
    [None, {}, {"a": 1, "b": -2.5, "c": torch.tensor(0.5), "d": torch.tensor([1.5])}],
)
def test_metrics_of_names_and_numbers_pass(metrics):
    check_metrics(metrics, P)


@pytest.mark.parametrize(
    "metrics",
    [
        [("a", 1.0)],
        {1: 1.0},
        {"a": True},
        {"a": "1"},
        {"a": None},
        {"a": 1.0, "b": torch.tensor([1.0, 2.0])},
        {"a": torch.tensor(1)},
        {"a": torch.tensor([])},
    ],
)
def test_metrics_that_are_no_names_with_numbers_are_refused(metrics):
    assert _refused(check_metrics, metrics, P) == _said(
        "the stored metrics", "are not names with numbers"
    )


# --- stored.py: the data state ------------------------------------------------------------------
CONFIG = {
    "data": {"normalize": "zscore", "per_series": True, "ngram_max_order": 3},
    "model": {"encoder": {"input_size": 2}, "num_targets": 1, "num_classes": 2, "vocab_size": 3},
}


def _vec(*values: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _norm(channels: int = 2, method: Any = "zscore", **parts: Any) -> dict[str, Any]:
    return {
        "method": method,
        "shift": torch.zeros(channels),
        "scale": torch.ones(channels),
        **parts,
    }


GOOD_STATE = {
    "normalizer": _norm(),
    "normalizers": [_norm(), _norm()],
    "target_normalizer": _norm(1),
    "train_mean": _vec(0.5),
    "classes": ["a", "b"],
    "series": ["s", "t"],
    "vocab": [97, sys.maxunicode],
    "sha256": "ab",
    "ngram_order": 3,
    "other": object(),  # another task's part: theirs to check
}


def test_the_sizes_come_from_the_config():
    sizes = _Sizes(CONFIG)
    assert (sizes.channels, sizes.targets, sizes.classes, sizes.vocab_size) == (2, 1, 2, 3)
    assert (sizes.method, sizes.per_series, sizes.max_order) == ("zscore", True, 3)
    bare = _Sizes({"data": [1], "model": {"encoder": "x"}})
    assert vars(bare) == dict.fromkeys(vars(sizes))


def test_a_data_state_of_every_part_rnnlab_writes_passes():
    check_data_state(GOOD_STATE, CONFIG, P)
    check_data_state({"normalizer": _norm(5, "minmax"), "classes": ["a"]}, {}, P)
    check_data_state({"normalizer": _norm(scale=torch.full((2,), TINY_SCALE))}, CONFIG, P)


@pytest.mark.parametrize(
    ("state", "problem"),
    [(None, "is missing"), ([], "is not a mapping"), ({1: 2}, "has the key 1, not a string")],
)
def test_a_data_state_that_is_no_mapping_of_names_is_refused(state, problem):
    assert _refused(check_data_state, state, CONFIG, P) == _said("the data state", problem)


def _part(key: str, value: Any) -> str:
    return f"is not what rnnlab wrote: its {key} {value}"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("normalizer", [1], "is not a normaliser's state (method, shift, scale)"),
        ("normalizer", _norm(extra=1), "is not a normaliser's state (method, shift, scale)"),
        ("normalizer", {"method": "zscore", "shift": 1}, "is not a normaliser's state"),
        ("normalizer", _norm(method=1), "has the method 1, but the config's data.normalize is"),
        ("normalizer", _norm(method="minmax"), "has the method 'minmax', but the config's data"),
        ("normalizer", _norm(shift=[0.0, 0.0]), "shift is a list, not a tensor"),
        ("normalizer", _norm(scale=_vec(1, 1, dtype=torch.float64)), "scale has dtype torch.f"),
        ("normalizer", _norm(3), "shift has shape (3,), not (2,) as the model's sizes give"),
        ("normalizer", _norm(shift=torch.zeros(1, 2)), "shift has shape (1, 2), not (2,) as"),
        ("normalizer", _norm(shift=torch.zeros(())), "shift has shape (), not (2,) as"),
        ("normalizer", _norm(shift=_vec(0, float("nan"))), "shift holds a value that is not fin"),
        ("normalizer", _norm(scale=_vec(1, float("inf"))), "scale holds a value that is not fin"),
        ("normalizer", _norm(scale=_vec(1, 0)), f"scale holds a value below {TINY_SCALE:.3g} (e"),
        ("normalizer", _norm(scale=_vec(1, TINY_SCALE / 2)), "scale holds a value below"),
        ("normalizer", _norm(scale=_vec(-1, 1)), "scale holds a value below"),
        ("target_normalizer", _norm(2), "shift has shape (2,), not (1,) as"),
        ("train_mean", _vec(0.5, 0.5), "has shape (2,), not (1,) as the model's sizes give"),
        ("train_mean", 0.5, "is a float, not a tensor"),
        ("normalizers", [], "is not a list of normalisers' states"),
        ("normalizers", {"a": _norm()}, "is not a list of normalisers' states"),
        ("normalizers", [_norm()], "holds 1 normalisers, not 2"),
        ("normalizers", [_norm(), _norm(), _norm()], "holds 3 normalisers, not 2"),
        ("normalizers", [_norm(), _norm(3)], "[1] shift has shape (3,), not (2,)"),
        ("normalizers", [_norm(), _norm(method="minmax")], "[1] has the method 'minmax'"),
        ("classes", ["a", "b", "c"], "holds 3 classes, but the model has 2"),
        ("classes", ["a", "a"], "names one of its classes twice"),
        ("classes", ["a", 1], "is not a list of classes"),
        ("classes", ("a", "b"), "is not a list of classes"),
        ("series", [], "is empty"),
        ("series", ["s", "s"], "names one of its series names twice"),
        ("series", "st", "is not a list of series names"),
        ("vocab", [1, 1], "holds a character twice"),
        ("vocab", [0, 97], "is not a list of character code points"),
        ("vocab", [97, sys.maxunicode + 1], "is not a list of character code points"),
        ("vocab", [True, 97], "is not a list of character code points"),
        ("vocab", (97, 98), "is not a list of character code points"),
        (
            "vocab",
            [97],
            "holds 1 characters, but the model's vocab_size is 3 (the characters plus one unknown)",
        ),
        ("sha256", 1, "is not a string"),
        ("ngram_order", 4, "is 4, not an order from 1 to data.ngram_max_order=3"),
        ("ngram_order", 0, "is 0, not an order from 1 to data.ngram_max_order=3"),
        ("ngram_order", True, "is True, not an order from 1 to data.ngram_max_order=3"),
        ("ngram_order", -1, "is -1, not an order from 1 to data.ngram_max_order=3"),
    ],
)
def test_each_part_of_the_data_state_is_refused_naming_what(key, value, problem):
    state = {**GOOD_STATE, key: value}
    if key == "series":  # the normalisers' count follows the series'
        del state["normalizers"]
    refused = _refused(check_data_state, state, CONFIG, P)
    said = f"checkpoint {P}: the data state is not what rnnlab wrote: its {key} {problem}"
    assert refused.startswith(said) and refused.endswith("; refusing to load it")


def test_a_method_is_named_with_the_configs():
    refused = _refused(check_data_state, {"normalizer": _norm(method=1)}, CONFIG, P)
    assert _part("normalizer", "has the method 1, but the config's data.normalize is 'zscore'") in (
        refused
    )


def test_sizes_the_config_does_not_give_are_not_checked():
    config = {"data": {"per_series": False, "ngram_max_order": 0}, "model": {"num_classes": True}}
    state = {
        "normalizers": [_norm(4, "any")],
        "series": ["a", "b"],
        "classes": ["x", "y", "z"],
        "vocab": [97],
        "ngram_order": 99,
        "train_mean": torch.zeros(7),
    }
    check_data_state(state, config, P)
    assert "holds 2 normalisers, not 1" in _refused(
        check_data_state, {**state, "normalizers": [_norm(), _norm()]}, config, P
    )
    per_series = {"data": {"per_series": True}}
    # series that are no list count as one, and are refused as themselves, not by the count
    refused = _refused(check_data_state, {"normalizers": [_norm()], "series": "ab"}, per_series, P)
    assert refused == _said("the data state", _part("series", "is not a list of series names"))
    check_data_state({"normalizers": [_norm(), _norm()], "series": ["a", "b"]}, per_series, P)
    check_data_state({"ngram_order": 3, "vocab": [1, 2]}, {"data": {"ngram_max_order": 3}}, P)
    check_data_state({"ngram_order": 1}, {"data": {"ngram_max_order": 1}}, P)
    assert "its ngram_order is 2, not an order from 1 to data.ngram_max_order=1" in _refused(
        check_data_state, {"ngram_order": 2}, {"data": {"ngram_max_order": 1}}, P
    )
    assert "data.ngram_max_order=None" in _refused(
        check_data_state, {"ngram_order": 0}, {"data": {"ngram_max_order": 0}}, P
    )


# --- weights.py ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def places() -> dict[str, Any]:
    return allowed_places()


def test_the_genuine_weights_pass_and_give_the_model_on_the_meta_device(genuine, places):
    model = check_weights(genuine["state_dict"], genuine[CONFIG_KEY]["model"], places, P, "w")
    assert type(model) is SequenceClassifier and type(model.encoder) is RNNEncoder
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert set(model.state_dict()) == set(genuine["state_dict"])


@pytest.mark.parametrize(
    "weights",
    [None, [torch.zeros(1)], {1: torch.zeros(1)}, {"a": [0.0]}, {"a": torch.zeros(1), "b": 1}],
)
def test_weights_that_are_no_mapping_of_names_to_tensors_are_refused(genuine, places, weights):
    refused = _refused(check_weights, weights, genuine[CONFIG_KEY]["model"], places, P, "the w")
    assert refused == _said("the w", "are not a mapping of names to tensors")


def _weights_refusal(checkpoint: dict[str, Any], places: Any) -> str:
    return _refused(
        check_weights, checkpoint["state_dict"], checkpoint[CONFIG_KEY]["model"], places, P, "w"
    )


def test_missing_unexpected_and_misshapen_weights_are_refused_by_name(checkpoint, places):
    weights = checkpoint["state_dict"]
    bias = weights.pop("head.1.bias")
    assert _weights_refusal(checkpoint, places) == _said(
        "w", "lack 'head.1.bias', which the stored model config has"
    )
    weights["head.1.bias"], weights["head.2.x"] = bias, torch.zeros(1)
    assert _weights_refusal(checkpoint, places) == _said(
        "w", "hold 'head.2.x', which the stored model config lacks"
    )
    del weights["head.2.x"]
    weights["head.1.bias"] = torch.zeros(8)
    assert _weights_refusal(checkpoint, places) == _said(
        "w' head.1.bias",
        "is (8,) torch.float32, but the stored model config makes it (9,) torch.float32",
    )
    weights["head.1.bias"] = torch.zeros(9, dtype=torch.float64)
    assert _weights_refusal(checkpoint, places) == _said(
        "w' head.1.bias",
        "is (9,) torch.float64, but the stored model config makes it (9,) torch.float32",
    )


def test_sizes_are_bounded_by_the_count_of_stored_numbers(checkpoint, places):
    numbers = sum(t.numel() for t in checkpoint["state_dict"].values())
    assert numbers == 8 * 12 + 8 * 2 + 8 + 8 + 9 * 2 + 9
    encoder = checkpoint[CONFIG_KEY]["model"]["encoder"]
    encoder["hidden_size"] = numbers + 1
    assert _weights_refusal(checkpoint, places) == _said(
        "model.encoder.hidden_size",
        f"is {numbers + 1}, more than the {numbers} numbers the stored weights hold (a size of "
        "the model is a dimension of its weights)",
    )
    encoder["hidden_size"] = 0
    assert _weights_refusal(checkpoint, places) == _said(
        "model.encoder.hidden_size", "is 0, not a whole number >= 1"
    )
    encoder["hidden_size"] = 2
    checkpoint[CONFIG_KEY]["model"]["num_classes"] = True
    assert _weights_refusal(checkpoint, places) == _said(
        "model.num_classes", "is True, not a whole number >= 1"
    )


def test_check_size_takes_lists_and_the_bound_itself():
    _check_size(10, "x", 10, P)
    _check_size([1, 10], "x", 10, P)
    _check_size((3,), "x", 10, P)
    assert _refused(_check_size, [1, 11], "x", 10, P).startswith(f"checkpoint {P}: x is 11, more")
    assert _refused(_check_size, (2, 0), "x", 10, P) == _said("x", "is 0, not a whole number >= 1")
    assert _refused(_check_size, 2.0, "x", 10, P) == _said("x", "is 2.0, not a whole number >= 1")


def test_built_nodes_are_each_object_with_its_class(genuine, places):
    model = genuine[CONFIG_KEY]["model"]
    found = [(where, cls) for where, _, cls in built_nodes(model, "model", places)]
    assert found == [
        ("model", SequenceClassifier),
        ("model.encoder", RNNEncoder),
        ("model.optimizer", torch.optim.AdamW),
        ("model.scheduler", torch.optim.lr_scheduler.ReduceLROnPlateau),
    ]
    nodes = {where: node for where, node, _ in built_nodes(model, "model", places)}
    assert nodes["model.encoder"] is model["encoder"]
    assert list(built_nodes(model, "elsewhere", places)) == []
    assert list(built_nodes(None, "model", places)) == []
    unknown = {**model, "_target_": "x.Y"}
    assert next(w for w, _, _ in built_nodes(unknown, "model", places)) == "model.encoder"


# --- rebuild.py ---------------------------------------------------------------------------------
def test_restore_rebuilds_seed_data_and_model(genuine):
    restored = restore(copy.deepcopy(genuine), P)
    seed, datamodule, model = restored
    assert seed == genuine[CONFIG_KEY]["seed"] == 42
    assert type(datamodule) is ClassificationDataModule and type(model) is SequenceClassifier
    assert datamodule.classes == genuine[DATA_KEY]["classes"]
    torch.testing.assert_close(
        datamodule.state_dict()["normalizer"]["scale"],
        genuine[DATA_KEY]["normalizer"]["scale"],
        rtol=0,
        atol=0,
    )
    for name, tensor in model.state_dict().items():
        assert tensor.device.type == "cpu"
        torch.testing.assert_close(tensor, genuine["state_dict"][name], rtol=0, atol=0)
    assert list(Restored(1, "d", "m")) == [1, "d", "m"]


def test_a_checkpoint_without_a_seed_restores_seed_zero(checkpoint):
    del checkpoint[CONFIG_KEY]["seed"]
    assert restore(checkpoint, P).seed == 0
    checkpoint[CONFIG_KEY]["seed"] = 7
    assert restore(checkpoint, P).seed == 7


def test_the_default_path_is_named_in_a_refusal(checkpoint):
    checkpoint[CONFIG_KEY] = []
    with pytest.raises(Malformed) as refused:
        restore(checkpoint)
    assert str(refused.value).startswith("checkpoint <checkpoint>: the stored config is not a")


def test_user_classes_are_the_commands(checkpoint):
    checkpoint[CONFIG_KEY]["data"]["_target_"] = "tests.own_classes.OwnVowels"
    with pytest.raises(Malformed, match=r"data\._target_ is 'tests\.own_classes\.OwnVowels'"):
        restore(copy.deepcopy(checkpoint), P)
    restored = restore(checkpoint, P, ["tests.own_classes.OwnVowels"])
    assert type(restored.datamodule).__name__ == "OwnVowels"


def test_check_stored_checks_everything_before_building(checkpoint, places):
    model = check_stored(checkpoint, P, places)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    checkpoint[METRICS_KEY] = {"a": "b"}
    assert _refused(check_stored, checkpoint, P, places) == _said(
        "the stored metrics", "are not names with numbers"
    )
    checkpoint[METRICS_KEY] = None
    checkpoint["state_dict"] = None
    assert _refused(check_stored, checkpoint, P, places) == _said(
        "the weights", "are not a mapping of names to tensors"
    )
    checkpoint[CONFIG_KEY]["model"]["encoder"]["x"] = 1
    assert _refused(check_stored, checkpoint, P, places) == _said(
        "model.encoder.x", "is not a setting of rnnlab.models.encoder.RNNEncoder"
    )
    checkpoint[CONFIG_KEY]["data"]["y"] = 1
    assert _refused(check_stored, checkpoint, P, places).startswith(f"checkpoint {P}: data.y is")
    checkpoint[CONFIG_KEY]["seed"] = -1
    assert "seed is -1" in _refused(check_stored, checkpoint, P, places)


def test_a_class_refusing_the_stored_settings_is_the_checkpoints(checkpoint):
    checkpoint[CONFIG_KEY]["model"]["encoder"]["cell"] = "nope"
    refused = _refused(restore, checkpoint, P)
    assert refused.startswith(f"checkpoint {P}: the stored config cannot be built (")
    assert refused.endswith("); refusing to load it")


def test_the_data_state_is_checked_before_it_is_loaded(checkpoint):
    checkpoint[DATA_KEY]["classes"] = ["a"]
    assert _refused(restore, checkpoint, P) == _said(
        "the data state",
        "is not what rnnlab wrote: its classes holds 1 classes, but the model has 9",
    )
    del checkpoint[DATA_KEY]
    checkpoint["ClassificationDataModule"] = {"classes": ["a"]}  # format 1's copy
    assert "its classes holds 1 classes" in _refused(restore, checkpoint, P)
    del checkpoint["ClassificationDataModule"]
    assert _refused(restore, checkpoint, P) == _said("the data state", "is missing")


@pytest.mark.parametrize(
    ("cls", "what"),
    [(SequenceClassifier, "the weights"), (ClassificationDataModule, "the data state")],
)
def test_a_class_that_still_refuses_the_checked_state_is_the_checkpoints(
    checkpoint, monkeypatch, cls, what
):
    def refuse(self: Any, state: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("not like this\nat all")

    monkeypatch.setattr(cls, "load_state_dict", refuse)
    assert _refused(restore, checkpoint, P) == _said(
        what, "is not what rnnlab wrote (not like this)"
    )


def test_a_data_setting_its_class_refuses_is_refused_naming_the_checkpoint(checkpoint):
    checkpoint[CONFIG_KEY]["data"]["batch_size"] = 0  # the allow-list takes it; the class not
    assert _refused(restore, checkpoint, P) == _said(
        "the stored config", "cannot be built (data.batch_size must be >= 1, got 0)"
    )


def test_a_model_that_fails_only_when_built_for_real_is_refused_naming_the_checkpoint(
    checkpoint, monkeypatch
):
    original = SequenceClassifier.__init__

    @functools.wraps(original)  # the same settings
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if torch.empty(0).device.type != "meta":  # checked on the meta device, then built
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        original(self, *args, **kwargs)

    monkeypatch.setattr(SequenceClassifier, "__init__", init)
    assert _refused(restore, checkpoint, P) == _said(
        "model", "cannot be built (DefaultCPUAllocator: can't allocate memory)"
    )


def test_refusals_of_the_stored_config_name_the_checkpoint():
    with pytest.raises(Malformed) as refused, _refused_as_stored(P):
        raise NotBuildable("model.x", "is bad")
    assert str(refused.value) == _said("model.x", "is bad")
    assert isinstance(refused.value.__cause__, NotBuildable)
    own = Malformed("q", "w", "is w")
    with pytest.raises(Malformed) as kept, _refused_as_stored(P):
        raise own
    assert kept.value is own
    with pytest.raises(Malformed) as wrapped, _refused_as_stored(P):
        raise ConfigError("model.encoder.cell=nope is not a cell")
    assert str(wrapped.value) == _said(
        "the stored config", "cannot be built (model.encoder.cell=nope is not a cell)"
    )
    with pytest.raises(KeyError), _refused_as_stored(P):
        raise KeyError("x")


def _failing(error: Exception) -> Any:
    def load(state: Any) -> None:
        raise error

    return load


def test_a_state_the_class_refuses_is_the_checkpoints():
    loaded: list[Any] = []
    _load(loaded.append, {"s": 1}, P, "the w")
    assert loaded == [{"s": 1}]
    own = ConfigError("x")
    with pytest.raises(ConfigError) as kept:
        _load(_failing(own), {}, P, "the w")
    assert kept.value is own
    assert _refused(_load, _failing(KeyError("bias")), {}, P, "the w") == _said(
        "the w", "is not what rnnlab wrote (it lacks 'bias')"
    )
    assert _refused(_load, _failing(RuntimeError("size mismatch\nmore")), {}, P, "the w") == (
        _said("the w", "is not what rnnlab wrote (size mismatch)")
    )


# --- resume.py: settings a class gained after the checkpoint was written ------------------------
def test_a_setting_added_since_is_the_same_when_left_at_its_default(genuine, places):
    """A format-1 checkpoint's encoder has no locked_input_dropout (added since): a resumed
    run that leaves it at the class's default builds the same model; any other value differs."""
    stored = genuine[CONFIG_KEY]
    assert "locked_input_dropout" not in stored["model"]["encoder"]
    current = copy.deepcopy(stored)
    current["model"]["encoder"].update(locked_input_dropout=0.0, weight_drop=0.0, unknown=0.0)
    current["model"]["encoder"]["hidden_size"] = 16  # stored: never skipped
    current["data"]["max_file_mb"] = 5
    skip = _added_since(stored, current, places)
    assert {"model.encoder.locked_input_dropout", "model.encoder.weight_drop"} <= skip
    assert not skip & {"model.encoder.unknown", "model.encoder.hidden_size", "model.encoder.cell"}
    current["model"]["encoder"]["locked_input_dropout"] = 0.5
    assert "model.encoder.locked_input_dropout" not in _added_since(stored, current, places)
    assert _defaults(RNNEncoder)["hidden_size"] == 64 and "input_size" not in _defaults(RNNEncoder)
    assert _defaults(OwnEncoder) == _defaults(RNNEncoder)


def test_a_resume_may_name_another_cache_folder_but_not_another_window():
    from rnnlab.checkpoint.diff import first_difference
    from rnnlab.checkpoint.resume import _MAY_DIFFER

    stored = {"cache_dir": "/old/logs/cache", "bptt": 128}
    moved = {"cache_dir": "/new/logs/cache", "bptt": 128}
    assert first_difference(stored, moved, "data", _MAY_DIFFER) is None
    found = first_difference(stored, {**moved, "bptt": 64}, "data", _MAY_DIFFER)
    assert found is not None and found.where == "data.bptt"

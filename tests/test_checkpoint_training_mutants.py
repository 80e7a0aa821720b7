"""Fast in-process checks of Lightning's part of a checkpoint as a resume checks it
(``training_state.py``): ``check_training_state`` called directly on the committed format-1
fixture (a 17 KB checkpoint with its loops, callbacks, optimiser and scheduler states) and on
edits of it, with the exact words of each refusal (so scripts/mutation.py finds a changed
operator, constant or argument)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnlab.checkpoint import CONFIG_KEY, allowed_places, load_checkpoint
from rnnlab.checkpoint.rebuild import check_stored
from rnnlab.checkpoint.stored import Malformed
from rnnlab.checkpoint.training_state import (
    _check_like,
    _fresh_loops,
    _kind_problem,
    _optional,
    _string,
    check_training_state,
)

FORMAT1 = Path(__file__).parent / "fixtures" / "checkpoint_format1.ckpt"
P = "p.ckpt"
ES = "EarlyStopping{'monitor': 'val/loss', 'mode': 'min'}"
MC = (
    "ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min', 'every_n_train_steps': 0, "
    "'every_n_epochs': 1, 'train_time_interval': None}"
)


@pytest.fixture(scope="module")
def genuine() -> dict[str, Any]:
    return load_checkpoint(FORMAT1)


@pytest.fixture(scope="module")
def places() -> dict[str, Any]:
    return allowed_places()


@pytest.fixture(scope="module")
def model(genuine, places) -> torch.nn.Module:
    return check_stored(copy.deepcopy(genuine), P, places)


@pytest.fixture
def ck(genuine) -> dict[str, Any]:
    return copy.deepcopy(genuine)


def _said(where: str, problem: str) -> str:
    return f"checkpoint {P}: {where} {problem}; refusing to load it"


@pytest.fixture
def check(model, places):
    def run(checkpoint: dict[str, Any]) -> None:
        check_training_state(checkpoint, P, checkpoint[CONFIG_KEY]["model"], model, places)

    return run


@pytest.fixture
def refused(check):
    def run(checkpoint: dict[str, Any]) -> str:
        with pytest.raises(Malformed) as error:
            check(checkpoint)
        assert "\n" not in str(error.value)
        return str(error.value)

    return run


def test_the_genuine_state_passes(ck, check):
    check(ck)
    for key in ("epoch", "global_step", "callbacks"):
        del ck[key]
    check(ck)  # a count of 0, no callbacks


@pytest.mark.parametrize("key", ["epoch", "global_step"])
@pytest.mark.parametrize(
    ("value", "shown"), [(-1, "-1"), (True, "True"), ("x", "'x'"), (1.0, "1.0")]
)
def test_counters_must_be_counts(ck, refused, key, value, shown):
    ck[key] = value
    assert refused(ck) == _said(key, f"is {shown}, not a count")


@pytest.mark.parametrize(
    ("value", "problem"),
    [(None, "is missing"), (5, "is 5, not a version"), ("abc", "is 'abc', not a version")],
)
def test_the_lightning_version_must_be_a_version(ck, refused, value, problem):
    if value is None:
        del ck["pytorch-lightning_version"]
    else:
        ck["pytorch-lightning_version"] = value
    assert refused(ck) == _said("pytorch-lightning_version", problem)


def test_loops_like_a_fresh_trainers(ck, check, refused):
    ck["loops"]["extra"] = {"anything": "x"}  # other keys are Lightning's to ignore
    ck["loops"]["fit_loop"]["extra"] = 1
    check(ck)
    processed = ck["loops"]["fit_loop"]["epoch_progress"]["current"]
    processed["processed"] = -1
    assert refused(ck) == _said(
        "loops.fit_loop.epoch_progress.current.processed", "is -1, not like 0"
    )
    processed["processed"] = 1.5
    assert "current.processed is 1.5, not like 0" in refused(ck)
    del ck["loops"]["fit_loop"]["epoch_progress"]
    assert refused(ck) == _said("loops.fit_loop", "lacks 'epoch_progress'")
    ck["loops"] = None
    assert refused(ck) == _said("loops", "is None, not a mapping")
    ck["loops"] = [1]
    assert refused(ck) == _said("loops", "is [1], not a mapping")


def test_fresh_loops_are_every_loops_and_keep_logging_as_it_was():
    before = logging.root.manager.disable
    loops = _fresh_loops.__wrapped__()
    assert list(loops) == ["fit_loop", "validate_loop", "test_loop", "predict_loop"]
    assert loops["fit_loop"]["epoch_progress"]["current"]["processed"] == 0
    assert logging.root.manager.disable == before


def test_kinds_of_values():
    assert _kind_problem(True, False) is None and _kind_problem(1, False) == "is 1, not like False"
    assert _kind_problem(2.5, 1) is None and _kind_problem(True, 1) == "is True, not like 1"
    assert _kind_problem(2.5, 1, counts=True) == "is 2.5, not like 1"
    assert _kind_problem(0, 1, counts=True) is None
    assert _kind_problem(-1, 1.5) is None and _kind_problem("1", 1.5) is not None
    assert _kind_problem("a", "a") is None
    assert _kind_problem("b", "a") == "is 'b', not 'a' as its settings make it"
    assert _kind_problem((1, 2.0), [0.5, 0.5]) is None
    assert _kind_problem([1], [0.5, 0.5]) == "is [1], not like [0.5, 0.5]"
    assert _kind_problem([1, "x"], (0.5, 0.5)) == "is 'x', not like 0.5"
    assert _kind_problem([-1], [0], counts=True) == "is -1, not like 0"
    assert _kind_problem(torch.zeros(2), torch.ones(2)) is None
    assert (
        _kind_problem(torch.zeros(3), torch.ones(2))
        == "is tensor([0., 0., 0.]), not like tensor([1., 1.])"
    )
    assert _kind_problem([0.0, 0.0], torch.ones(2)) is not None
    assert _kind_problem(None, None) is None and _kind_problem(0, None) == "is 0, not like None"
    assert _kind_problem(b"x", b"y") is None and _kind_problem("x", b"y") is not None


def test_like_compares_numbers_as_numbers_unless_counts_are_asked_for():
    _check_like({"a": -1, "b": 2.5}, {"a": 1, "b": 1}, "w", P)
    with pytest.raises(Malformed, match=r"w\.a is -1, not like 1"):
        _check_like({"a": -1}, {"a": 1}, "w", P, counts=True)


def test_optional_checks_take_none_or_what_the_check_takes():
    optional = _optional(_string)
    assert optional(None) is True and optional("a") is True
    assert optional(1) is False


def test_like_refuses_keys_lightning_does_not_write_unless_told():
    _check_like({"a": 1, "b": 2}, {"a": 0}, "w", P, allow_extra=True)
    with pytest.raises(Malformed) as refused:
        _check_like({"a": 1, "b": 2}, {"a": 0}, "w", P)
    assert str(refused.value) == _said("w", "has 'b', which Lightning does not write")
    with pytest.raises(Malformed) as deep:
        _check_like({"a": {"c": "x"}}, {"a": {"c": 0}}, "w", P)
    assert str(deep.value) == _said("w.a.c", "is 'x', not like 0")


# --- callbacks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("callbacks", [[1, 2], {1: {}}, {"EarlyStopping": 1}, None])
def test_callbacks_must_map_names_to_states(ck, refused, callbacks):
    ck["callbacks"] = callbacks
    assert refused(ck) == _said("callbacks", "is not a mapping of callbacks' names to states")


@pytest.mark.parametrize(
    ("name", "field", "value", "problem"),
    [
        (ES, "wait_count", -1, "EarlyStopping.wait_count is -1"),
        (ES, "stopped_epoch", "x", "EarlyStopping.stopped_epoch is 'x'"),
        (ES, "best_score", 2.5, "EarlyStopping.best_score is 2.5"),
        (ES, "best_score", torch.tensor([1.0, 2.0]), "EarlyStopping.best_score is tensor"),
        (ES, "best_score", torch.tensor(1), "EarlyStopping.best_score is tensor(1)"),
        (ES, "patience", True, "EarlyStopping.patience is True"),
        (ES, "stopping_reason", 5, "EarlyStopping.stopping_reason is 5"),
        (ES, "stopping_reason", -1, "EarlyStopping.stopping_reason is -1"),
        (ES, "stopping_reason_message", 1, "EarlyStopping.stopping_reason_message is 1"),
        (MC, "best_model_score", 1.0, "ModelCheckpoint.best_model_score is 1.0"),
        (MC, "best_model_path", "/etc/passwd", "ModelCheckpoint.best_model_path is '/etc/passwd'"),
        (MC, "best_model_path", 1, "ModelCheckpoint.best_model_path is 1"),
        (MC, "monitor", 1, "ModelCheckpoint.monitor is 1"),
        (MC, "current_score", "x", "ModelCheckpoint.current_score is 'x'"),
        (MC, "dirpath", 1, "ModelCheckpoint.dirpath is 1"),
        (MC, "best_k_models", {"": torch.tensor(1.0)}, "ModelCheckpoint.best_k_models is {''"),
        (MC, "best_k_models", {"a.ckpt": 1.0}, "ModelCheckpoint.best_k_models is {'a.ckpt'"),
        (MC, "best_k_models", {"a.txt": torch.tensor(1.0)}, "ModelCheckpoint.best_k_models is"),
        (MC, "best_k_models", [], "ModelCheckpoint.best_k_models is []"),
        (MC, "kth_best_model_path", None, "ModelCheckpoint.kth_best_model_path is None"),
        (MC, "kth_value", 1, "ModelCheckpoint.kth_value is 1"),
        (MC, "last_model_path", "x.txt", "ModelCheckpoint.last_model_path is 'x.txt'"),
        ("EMAWeights", "latest_update_step", -1, "EMAWeights.latest_update_step is -1"),
    ],
)
def test_each_field_lightning_reads_back_is_checked(ck, refused, name, field, value, problem):
    ck["callbacks"].setdefault(name, {"latest_update_step": 0})[field] = value
    said = refused(ck)
    assert said.startswith(f"checkpoint {P}: callbacks.{problem}"), said


@pytest.mark.parametrize(
    ("name", "field"),
    [
        (ES, "wait_count"),
        (ES, "stopped_epoch"),
        (ES, "best_score"),
        (ES, "patience"),
        (MC, "best_model_score"),
        (MC, "best_model_path"),
        ("EMAWeights", "latest_update_step"),
    ],
)
def test_required_fields_must_be_there(ck, refused, name, field):
    ck["callbacks"].setdefault(name, {"latest_update_step": 0}).pop(field)
    short = name.split("{")[0]
    assert refused(ck) == _said(f"callbacks.{short}", f"lacks {field!r}")


def test_a_missing_optional_field_does_not_end_the_checks(ck, refused):
    mc = ck["callbacks"][MC]
    del mc["monitor"]  # optional, and the first of them
    mc["last_model_path"] = "x.txt"  # the last
    assert refused(ck) == _said("callbacks.ModelCheckpoint.last_model_path", "is 'x.txt'")


def test_a_callback_is_known_by_the_name_before_its_first_brace(ck, refused):
    state = ck["callbacks"].pop(ES)
    ck["callbacks"]["EarlyStopping{'monitor': {'nested': 1}}"] = {**state, "stopped_epoch": "x"}
    assert refused(ck) == _said("callbacks.EarlyStopping.stopped_epoch", "is 'x'")


def test_optional_fields_and_values_that_pass(ck, check):
    es, mc = ck["callbacks"][ES], ck["callbacks"][MC]
    for field in ("stopping_reason", "stopping_reason_message"):
        del es[field]
    for field in ("monitor", "current_score", "dirpath", "kth_value", "last_model_path"):
        del mc[field]
    check(ck)
    es.update(stopping_reason=4, stopping_reason_message="stopped")
    mc.update(monitor=None, current_score=None, dirpath=None, kth_value=None)
    mc.update(last_model_path="/x/last.ckpt", best_model_score=None)
    ck["callbacks"]["EMAWeights"] = {"latest_update_step": 3}
    ck["callbacks"]["Other{x}"] = {"wait_count": "anything"}
    check(ck)
    es["stopping_reason"] = 0
    mc.update(best_k_models={}, best_model_path="", kth_best_model_path="")
    check(ck)


def test_the_best_files_are_among_those_kept(ck, check, refused):
    mc = ck["callbacks"][MC]
    mc["best_model_path"] = "/elsewhere/best.ckpt"  # relocated: compared by name
    check(ck)
    mc["kth_best_model_path"] = "/x/other.ckpt"
    assert refused(ck) == _said(
        "callbacks.ModelCheckpoint.kth_best_model_path",
        "is '/x/other.ckpt', none of the best checkpoints it keeps (['best.ckpt'])",
    )
    mc["kth_best_model_path"] = ""
    assert "kth_best_model_path is ''," in refused(ck)
    mc["kth_best_model_path"] = mc["best_model_path"]
    mc["best_model_path"] = "/x/b.ckpt"
    assert refused(ck).startswith(
        f"checkpoint {P}: callbacks.ModelCheckpoint.best_model_path is '/x/b.ckpt', none"
    )
    del mc["best_k_models"]  # nothing kept: nothing to compare with
    check(ck)


# --- optimiser and scheduler --------------------------------------------------------------------
def _group(ck: dict[str, Any]) -> dict[str, Any]:
    return ck["optimizer_states"][0]["param_groups"][0]


def test_an_optimiser_the_config_cannot_make_is_refused(ck, refused):
    ck[CONFIG_KEY]["model"]["optimizer"]["lr"] = -1.0
    assert refused(ck) == _said(
        "model.optimizer or model.scheduler", "cannot be made (Invalid learning rate: -1.0)"
    )


@pytest.mark.parametrize("states", [None, {}, [], [{}, {}], [1]])
def test_one_optimisers_state(ck, refused, states):
    ck["optimizer_states"] = states
    assert refused(ck) == _said("optimizer_states", "is not one optimiser's state")


@pytest.mark.parametrize("groups", [None, [], {"lr": 1}])
def test_a_list_of_groups(ck, refused, groups):
    ck["optimizer_states"][0]["param_groups"] = groups
    assert refused(ck) == _said("optimizer_states[0].param_groups", "is not a list of groups")


def test_groups_like_a_fresh_optimisers(ck, check, refused):
    where = "optimizer_states[0].param_groups[0]"
    group = _group(ck)
    group["lr"] = 0.5  # a scheduler changes it: any number
    check(ck)
    group["lr"] = "x"
    assert refused(ck) == _said(f"{where}.lr", "is 'x', not like 0.003")
    group["lr"] = float("nan")
    assert refused(ck) == _said(f"{where}.lr", "is nan, not finite")
    group["lr"] = float("inf")
    assert refused(ck) == _said(f"{where}.lr", "is inf, not finite")
    group["lr"], group["extra"] = 0.1, 1
    assert refused(ck) == _said(where, "has 'extra', which Lightning does not write")
    del group["extra"], group["eps"]
    assert refused(ck) == _said(where, "lacks 'eps'")
    ck["optimizer_states"][0]["param_groups"] = [{"params": (0,)}]
    assert refused(ck) == _said(where, "is not a parameter group")
    ck["optimizer_states"][0]["param_groups"] = [1]
    assert refused(ck) == _said(where, "is not a parameter group")


@pytest.mark.parametrize(
    "params",
    [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4, 4],
        [0, 1, 2, 3, 4, 6],
        [0, 1, 2, 3, 4, True],
        [0, True, 2, 3, 4, 5],  # every index once, as a set sees it
        [0, 1.0, 2, 3, 4, 5],
    ],
)
def test_the_groups_name_each_parameter_once(ck, refused, params):
    _group(ck)["params"] = params
    assert refused(ck) == _said(
        "optimizer_states[0]", "does not name each of the model's 6 parameters once"
    )


def test_groups_may_share_the_parameters_out(ck, check):
    first = _group(ck)
    ck["optimizer_states"][0]["param_groups"] = [
        {**first, "params": [0, 1, 2]},
        {**first, "params": [3, 4, 5]},
    ]
    check(ck)
    ck["optimizer_states"][0]["param_groups"][1]["lr"] = float("nan")
    with pytest.raises(Malformed, match=r"param_groups\[1\]\.lr is nan"):
        check(ck)


def test_parameter_states_of_the_parameters_shapes(ck, check, refused):
    states = ck["optimizer_states"][0]["state"]
    states[0]["step"] = 14  # a number, as older torch wrote it
    states[0]["extra"] = torch.tensor(2.0)  # a scalar tensor, whatever the shape
    check(ck)
    states[0]["exp_avg"] = torch.zeros(2)
    assert refused(ck) == _said(
        "optimizer_states[0].state[0].exp_avg", "has shape (2,), but its parameter's is (8, 12)"
    )
    states[0]["exp_avg"] = torch.zeros(8, 12, dtype=torch.int64)
    assert refused(ck) == _said("optimizer_states[0].state[0].exp_avg", "has dtype torch.int64")
    states[0]["exp_avg"] = torch.zeros((), dtype=torch.int64)
    assert refused(ck) == _said("optimizer_states[0].state[0].exp_avg", "has dtype torch.int64")
    states[0]["exp_avg"] = torch.zeros(8, 12)
    states[0]["step"] = "x"
    assert refused(ck) == _said("optimizer_states[0].state[0].step", "is 'x', not a number")
    states[0]["step"] = float("nan")
    assert refused(ck) == _said("optimizer_states[0].state[0].step", "is nan, not a number")


@pytest.mark.parametrize(("index", "state"), [(6, {}), (-1, {}), ("0", {}), (1.5, {}), (0, [1])])
def test_states_of_parameters_the_model_lacks_are_refused(ck, refused, index, state):
    states = ck["optimizer_states"][0]["state"]
    states[index] = state
    assert refused(ck) == _said(
        f"optimizer_states[0].state[{index!r}]",
        "is not the state of one of the model's parameters",
    )


def test_the_parameter_states_are_a_mapping(ck, check, refused):
    ck["optimizer_states"][0]["state"] = {}
    check(ck)
    ck["optimizer_states"][0]["state"] = []
    assert refused(ck) == _said("optimizer_states[0].state", "is not a mapping")


@pytest.mark.parametrize("states", [None, [], "x", "two"])
def test_one_scheduler_state_per_scheduler(ck, refused, states):
    ck["lr_schedulers"] = ck["lr_schedulers"] * 2 if states == "two" else states
    assert refused(ck) == _said(
        "lr_schedulers", "does not hold one state per scheduler the run has"
    )


def test_without_a_scheduler_no_state(ck, check, refused):
    ck[CONFIG_KEY]["model"]["scheduler"] = None
    assert "lr_schedulers does not hold one state" in refused(ck)
    ck["lr_schedulers"] = []
    check(ck)


def test_the_scheduler_state_is_like_a_fresh_schedulers(ck, refused):
    ck["lr_schedulers"][0]["patience"] = "x"
    assert refused(ck) == _said("lr_schedulers[0].patience", "is 'x', not like 5")
    ck["lr_schedulers"][0]["patience"] = 5
    ck["lr_schedulers"][0]["extra"] = 1
    assert refused(ck) == _said("lr_schedulers[0]", "has 'extra', which Lightning does not write")


def test_long_values_are_shown_cut(ck, refused):
    ck["epoch"] = "x" * 39
    assert refused(ck) == _said("epoch", f"is {repr('x' * 39)[:37]}..., not a count")
    ck["epoch"] = "x" * 38
    assert refused(ck) == _said("epoch", f"is {'x' * 38!r}, not a count")

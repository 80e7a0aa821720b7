"""One walk finds where stored values differ, for resume and ensembles alike
(``rnnlab.checkpoint.diff``); each words it in its own message."""

from __future__ import annotations

import torch

from rnnlab.checkpoint.diff import Difference, first_difference
from rnnlab.ensemble import member_difference

STORED = {
    "data": {"name": "a", "columns": ["x", "y"], "seed": 1},
    "stats": torch.tensor([1.0, 2.0]),
}


def test_the_first_difference_in_key_order_with_its_kind():
    other = {"data": {"name": "b", "columns": ["x"], "seed": 2}, "stats": torch.tensor([1.0])}
    assert first_difference(STORED, other, "run") == Difference(
        "run.data.columns", ["x", "y"], ["x"], "length"
    )
    other = {**STORED, "data": {**STORED["data"], "columns": ["x", "z"]}}
    assert first_difference(STORED, other, "run") == Difference(
        "run.data.columns[1]", "y", "z", "value"
    )
    found = first_difference(STORED, {**STORED, "stats": torch.tensor([1.0, 3.0])}, "run")
    assert found is not None and (found.where, found.kind) == ("run.stats", "tensor")
    assert first_difference(STORED, {"data": STORED["data"]}, "run") == Difference(
        "run.stats", STORED["stats"], None, "tensor"
    )


def test_equal_values_and_skipped_paths_give_none():
    copy = {"data": dict(STORED["data"]), "stats": STORED["stats"].clone()}
    assert first_difference(STORED, copy, "run") is None
    other = {**copy, "data": {**copy["data"], "seed": 7}}
    assert first_difference(STORED, other, "run", {"run.data.seed"}) is None
    assert first_difference(STORED, other, "run", {"run.seed"}) is not None  # only that path


def test_ensembles_word_it_against_member_0():
    first, other = {"name": "a", "columns": ["x", "y"]}, {"name": "a", "columns": ["x"]}
    assert member_difference(first, other, "data", ()) == (
        "data.columns has 1 entries there but 2 in member 0"
    )
    assert member_difference(first, {**first, "name": "b"}, "data", ()) == (
        "data.name is 'b' there but 'a' in member 0"
    )
    assert member_difference(first, {**first, "name": "b"}, "data", {"name"}) is None
    assert member_difference({"t": torch.zeros(2)}, {"t": torch.ones(2)}, "s", ()) == "s.t differs"

"""``rnnlab.ensemble``'s own logic on stand-in members, without training: the checks of the
members and of the output path word each problem exactly, the average is the members' mean
element by element, and the command writes what it computed. Fast (no model is trained); the
end-to-end runs are in tests/test_ensemble.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import rnnlab.ensemble as ens
from rnnlab.ensemble import (
    Member,
    Replay,
    as_forward_output,
    check_members,
    check_output,
    member_difference,
)
from rnnlab.utils.errors import ConfigError, DataError


class _Classifier:
    averaged_output = "probabilities"

    def forward_output(self, average: torch.Tensor, batch: Any) -> torch.Tensor:
        return average.log() + batch.offset


class _Regressor(_Classifier):
    averaged_output = "predictions"


def _member(
    i: int,
    model: Any = None,
    data: dict | None = None,
    state: dict | None = None,
    split_settings: tuple[str, ...] = ("folds", "fold"),
    split_state: tuple[str, ...] = ("validation_rows",),
) -> Member:
    datamodule = SimpleNamespace(split_settings=split_settings, split_state=split_state)
    return Member(
        Path(f"run{i}") / "checkpoints" / "best.ckpt",
        {"data": {"name": "set", "folds": 5, "fold": i} if data is None else data},
        {"classes": ["a", "b"], "validation_rows": [i]} if state is None else state,
        datamodule,
        model if model is not None else _Classifier(),
    )


def test_members_of_one_task_and_data_pass_whatever_their_validation_split():
    check_members([_member(0), _member(1), _member(2)])
    assert _member(0).output_key == "probabilities"
    assert _member(0, _Regressor()).output_key == "predictions"


def test_a_member_of_another_task_is_refused_naming_both_classes():
    with pytest.raises(DataError) as caught:
        check_members([_member(0), _member(1), _member(2, _Regressor())])
    assert str(caught.value) == (
        f"member 2 ({Path('run2/checkpoints/best.ckpt')}) is a _Regressor, member 0 "
        f"({Path('run0/checkpoints/best.ckpt')}) a _Classifier; an ensemble's members share "
        "one task"
    )


@pytest.mark.parametrize(
    ("data", "state", "difference"),
    [
        ({"name": "other", "folds": 5, "fold": 1}, None, "data.name is 'other' there but 'set'"),
        (None, {"classes": ["a"], "validation_rows": [1]}, "data state.classes has 1 entries"),
        (None, {"classes": ["a", "c"], "validation_rows": [1]}, "data state.classes[1] is 'c'"),
    ],
)
def test_a_member_of_other_data_is_refused_naming_the_first_difference(data, state, difference):
    with pytest.raises(DataError) as caught:
        check_members([_member(0), _member(1, data=data, state=state)])
    assert str(caught.value).startswith(
        f"member 1 ({Path('run1/checkpoints/best.ckpt')}) does not share member 0's data: "
        f"{difference}"
    )
    assert str(caught.value).endswith(
        "in member 0; ensemble runs of the same data and normalisation"
    )


def test_member_difference_words_each_kind_of_difference():
    assert member_difference({"a": 1, "b": 2}, {"a": 1, "b": 3}, "data", {"b"}) is None
    assert member_difference({"a": [1, 2]}, {"a": [1]}, "data", ()) == (
        "data.a has 1 entries there but 2 in member 0"
    )
    assert member_difference({"a": torch.zeros(2)}, {"a": torch.ones(2)}, "data state", ()) == (
        "data state.a differs"
    )
    assert member_difference({"a": "x"}, {"a": "y"}, "data", ()) == (
        "data.a is 'y' there but 'x' in member 0"
    )


def _cfg(tmp_path: Path, **settings: Any) -> Any:
    return OmegaConf.create({"input": None, "predictions": None, **settings})


def test_check_output_refuses_each_bad_predictions_path(tmp_path):
    source = tmp_path / "in.ts"
    source.write_text("x")
    assert check_output(_cfg(tmp_path)) is None
    assert check_output(_cfg(tmp_path, input=str(source), predictions="p.csv")) == Path("p.csv")
    both = "set both input=<file> and predictions=<csv>, or neither"
    cases = [
        ({"input": str(source)}, ConfigError, both),
        ({"predictions": "p.csv"}, ConfigError, both),
        (
            {"input": str(tmp_path / "no.ts"), "predictions": "p.csv"},
            DataError,
            f"input={tmp_path / 'no.ts'} does not exist; pass the file to predict",
        ),
        (
            {"input": str(source), "predictions": str(source)},
            ConfigError,
            f"predictions={source} would overwrite the input; choose another path",
        ),
        (
            {"input": str(source), "predictions": str(source / "p.csv")},
            DataError,
            f"cannot write {source / 'p.csv'}: {source} is a file; choose predictions=",
        ),
    ]
    existing = tmp_path / "old.csv"
    existing.write_text("old")
    cases.append(
        (
            {"input": str(source), "predictions": str(existing)},
            ConfigError,
            f"predictions={existing} exists; choose another path or pass overwrite=true",
        )
    )
    for settings, error, message in cases:
        with pytest.raises(error) as caught:
            check_output(_cfg(tmp_path, **settings))
        assert str(caught.value) == message
    allowed = _cfg(tmp_path, input=str(source), predictions=str(existing), overwrite=True)
    assert check_output(allowed) == existing


def test_replay_hands_out_the_next_rows_per_batch():
    replay = Replay(torch.arange(10.0).reshape(5, 2))
    assert torch.equal(replay(torch.zeros(2, 3), torch.ones(2)), torch.tensor([[0.0, 1], [2, 3]]))
    assert torch.equal(
        replay(torch.zeros(3, 1), torch.ones(3)), torch.tensor([[4.0, 5], [6, 7], [8, 9]])
    )
    assert replay.used == 5


def test_forward_output_rows_are_made_batch_by_batch(monkeypatch):
    batches = [
        SimpleNamespace(offset=torch.tensor(10.0), size=2),
        SimpleNamespace(offset=torch.tensor(20.0), size=1),
    ]

    class _Sized(SimpleNamespace):
        def __len__(self) -> int:
            return self.size

    loader = [_Sized(**vars(b)) for b in batches]
    monkeypatch.setattr(ens, "test_loader", lambda member: loader)
    average = torch.tensor([[0.5, 0.5], [0.25, 0.75], [1.0, 1.0]])
    rows = as_forward_output(_member(0), average)
    expected = torch.cat([average[:2].log() + 10, average[2:].log() + 20])
    assert torch.equal(rows, expected)


def _runs(tmp_path: Path, n: int) -> list[str]:
    runs = []
    for i in range(n):
        (tmp_path / f"r{i}" / "checkpoints").mkdir(parents=True)
        (tmp_path / f"r{i}" / "checkpoints" / "best.ckpt").write_text("")
        runs.append(str(tmp_path / f"r{i}"))
    return runs


def _stand_in_command(
    monkeypatch, outputs: list[torch.Tensor], targets: list[torch.Tensor]
) -> dict[str, Any]:
    """``ensemble``'s helpers replaced: members from ``outputs``/``targets`` by position."""
    seen: dict[str, Any] = {"user_classes": [], "average": None}
    members: dict[Path, int] = {}

    def load_member(path: Path, user_classes: Any = ()) -> Member:
        seen["user_classes"].append(tuple(user_classes))
        member = _member(len(members))
        member.checkpoint = path
        members[path] = len(members)
        return member

    def test_outputs(cfg: Any, member: Member) -> tuple[torch.Tensor, torch.Tensor]:
        i = members[member.checkpoint]
        return outputs[i], targets[i]

    def ensemble_metrics(cfg: Any, member: Member, average: torch.Tensor) -> dict[str, float]:
        assert members[member.checkpoint] == 0  # scored by member 0's test step
        seen["average"] = average
        return {"test/loss": 0.25, "test/acc": 0.5}

    def member_metrics(cfg: Any, member: Member) -> dict[str, float]:
        return {"test/loss": float(members[member.checkpoint]), "test/acc": 1.0}

    monkeypatch.setattr(ens, "load_member", load_member)
    monkeypatch.setattr(ens, "test_outputs", test_outputs)
    monkeypatch.setattr(ens, "ensemble_metrics", ensemble_metrics)
    monkeypatch.setattr(ens, "member_metrics", member_metrics)
    return seen


def test_the_command_averages_the_members_outputs_and_writes_every_metric(
    tmp_path, monkeypatch, caplog
):
    outputs = [
        torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]),
        torch.tensor([[0.4, 0.6], [1.0, 0.0], [0.1, 0.9]]),
        torch.tensor([[0.0, 1.0], [0.2, 0.8], [0.3, 0.7]]),
    ]
    targets = [torch.tensor([1, 0, 1])] * 3
    seen = _stand_in_command(monkeypatch, outputs, targets)
    runs = _runs(tmp_path, 3)
    out = tmp_path / "out"
    cfg = OmegaConf.create(
        {"runs": runs, "paths": {"output_dir": str(out)}, "user_classes": ["my.Model"]}
    )
    caplog.set_level(logging.INFO, logger="rnnlab.ensemble")
    metrics = ens.ensemble(cfg)
    expected_average = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert torch.allclose(seen["average"], expected_average, atol=1e-7)
    assert seen["user_classes"] == [("my.Model",)] * 3
    assert metrics == {
        "members": 3,
        "test/loss": 0.25,
        "test/acc": 0.5,
        **{f"member{i}/test/loss": float(i) for i in range(3)},
        **{f"member{i}/test/acc": 1.0 for i in range(3)},
    }
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert json.loads((out / "members.json").read_text()) == [
        str((Path(run) / "checkpoints" / "best.ckpt").resolve()) for run in runs
    ]
    assert caplog.messages[0] == "ensemble of 3: {'test/loss': 0.25, 'test/acc': 0.5}"
    assert not list(out.glob("*.csv"))

    # a single run directory, not a list, and no user classes
    seen = _stand_in_command(monkeypatch, outputs[:1], targets[:1])
    one = OmegaConf.create({"runs": runs[0], "paths": {"output_dir": str(tmp_path / "one")}})
    assert ens.ensemble(one)["members"] == 1
    assert seen["user_classes"] == [()]
    assert torch.equal(seen["average"], outputs[0])


@pytest.mark.parametrize("odd", [1, 2])
def test_members_with_other_test_targets_are_refused_before_anything_is_written(
    tmp_path, monkeypatch, odd
):
    outputs = [torch.ones(3, 2) / 2] * 3
    targets = [torch.tensor([1, 0, 1])] * 3
    targets[odd] = torch.tensor([1, 1, 1])
    _stand_in_command(monkeypatch, outputs, targets)
    runs = _runs(tmp_path, 3)
    cfg = OmegaConf.create({"runs": runs, "paths": {"output_dir": str(tmp_path / "out")}})
    with pytest.raises(DataError) as caught:
        ens.ensemble(cfg)
    assert str(caught.value) == (
        f"member {odd} ({Path(runs[odd]) / 'checkpoints' / 'best.ckpt'}) has other test targets "
        "than member 0; ensemble runs of the same data"
    )
    assert not (tmp_path / "out").exists()


def test_predictions_for_a_file_are_the_members_mean(tmp_path, monkeypatch):
    frames: list[Any] = []
    setups: list[str] = []

    class _Data:
        def __init__(self, rows: torch.Tensor) -> None:
            self.rows = rows

        def setup_predict(self, path: str) -> None:
            setups.append(path)

        def prediction_frame(self, outputs: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
            assert self is members[0].datamodule  # member 0's data writes the frame
            frames.append(outputs)
            return pd.DataFrame(outputs[0]["probabilities"].numpy(), columns=["p_a", "p_b"])

    class _Trainer:
        def predict(self, model: Any, datamodule: Any) -> list[dict[str, torch.Tensor]]:
            rows = datamodule.rows
            return [{"probabilities": rows[:2]}, {"probabilities": rows[2:]}]

    monkeypatch.setattr(ens, "_trainer", lambda cfg: _Trainer())
    members = [_member(0), _member(1)]
    members[0].datamodule = _Data(torch.tensor([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]]))
    members[1].datamodule = _Data(torch.tensor([[0.4, 0.6], [0.2, 0.8], [0.0, 1.0]]))
    frame = ens.predict_file(OmegaConf.create({}), members, "file.ts")
    assert setups == ["file.ts", "file.ts"]
    [[entry]] = frames
    assert list(entry) == ["probabilities"]
    assert torch.allclose(
        entry["probabilities"], torch.tensor([[0.3, 0.7], [0.4, 0.6], [0.5, 0.5]])
    )
    assert frame.shape == (3, 2)


def test_the_command_runs_the_ensemble_under_its_own_config(monkeypatch):
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ens, "command", lambda *args: calls.append(("command", *args)))
    monkeypatch.setattr(ens, "run_task", lambda *args: calls.append(("run_task", *args)))
    ens.main()
    cfg = OmegaConf.create({"runs": "x"})
    ens.job(cfg)
    assert calls == [("command", "ensemble", ens.job), ("run_task", ens.ensemble, cfg)]


def test_a_members_outputs_and_metrics_come_from_its_own_test_split_in_stored_order(monkeypatch):
    calls: list[tuple[Any, ...]] = []

    class _Batch(SimpleNamespace):
        def __len__(self) -> int:
            return len(self.y)

        def targets(self) -> torch.Tensor:
            return self.y

    class _Data:
        def setup(self, stage: str) -> None:
            calls.append(("setup", stage))

        def dataset(self, split: str) -> str:
            return f"{split} rows"

        def loader(self, data: str, shuffle: bool) -> list[_Batch]:
            calls.append(("loader", data, shuffle))
            return [_Batch(y=torch.tensor([1, 0])), _Batch(y=torch.tensor([2]))]

    class _Trainer:
        def __init__(self) -> None:
            self.callback_metrics = {"test/acc": torch.tensor(0.75)}

        def test(self, model: Any, dataloaders: Any, verbose: bool = True) -> None:
            calls.append(("test", model, len(dataloaders), verbose))

        def predict(self, model: Any, dataloaders: Any) -> list[dict[str, torch.Tensor]]:
            calls.append(("predict", model, len(dataloaders)))
            return [{"probabilities": torch.ones(2, 3)}, {"probabilities": torch.zeros(1, 3)}]

    monkeypatch.setattr(ens, "_trainer", lambda cfg: _Trainer())
    member = _member(0)
    member.datamodule = _Data()
    cfg = OmegaConf.create({})
    assert ens.member_metrics(cfg, member) == {"test/acc": 0.75}
    # stored order (no shuffling), and quietly: the command logs its own summary
    assert calls == [
        ("setup", "test"),
        ("loader", "test rows", False),
        ("test", member.model, 2, False),
    ]
    calls.clear()
    outputs, targets = ens.test_outputs(cfg, member)
    assert torch.equal(outputs, torch.cat([torch.ones(2, 3), torch.zeros(1, 3)]))
    assert torch.equal(targets, torch.tensor([1, 0, 2]))
    assert calls[-1] == ("predict", member.model, 2)


def test_replay_puts_the_rows_on_the_device_of_the_batch():
    replay = Replay(torch.ones(3, 2))
    assert replay(torch.zeros(2, 4, device="meta"), torch.ones(2)).device.type == "meta"


def _replayed_batches() -> list[Any]:
    class _Sized(SimpleNamespace):
        def __len__(self) -> int:
            return len(self.x)

    return [
        _Sized(x=torch.zeros(2, 1), lengths=torch.ones(2), offset=torch.tensor(1.0)),
        _Sized(x=torch.zeros(1, 1), lengths=torch.ones(1), offset=torch.tensor(2.0)),
    ]


@pytest.mark.parametrize("scored", [3, 2])
def test_the_ensembles_metrics_are_member_0s_test_step_on_the_average(monkeypatch, scored):
    batches = _replayed_batches()
    seen: list[Any] = []

    class _Trainer:
        def __init__(self) -> None:
            self.callback_metrics = {"test/loss": torch.tensor(0.5)}

        def test(self, model: Any, dataloaders: Any, verbose: bool = True) -> None:
            seen.append(verbose)
            for batch in dataloaders[: 2 if scored == 3 else 1]:
                seen.append(model.forward(batch.x, batch.lengths))

    monkeypatch.setattr(ens, "_trainer", lambda cfg: _Trainer())
    monkeypatch.setattr(ens, "test_loader", lambda member: batches)
    member = _member(0)
    average = torch.tensor([[0.5, 0.5], [0.25, 0.75], [1.0, 1.0]])
    cfg = OmegaConf.create({})
    if scored == 3:
        assert ens.ensemble_metrics(cfg, member, average) == {"test/loss": 0.5}
        assert seen[0] is False  # quietly: the command logs its own summary
        torch.testing.assert_close(seen[1], average[:2].log() + 1)
        torch.testing.assert_close(seen[2], average[2:].log() + 2)
    else:
        with pytest.raises(RuntimeError) as caught:
            ens.ensemble_metrics(cfg, member, average)
        assert str(caught.value) == "scored 2 of 3 ensemble outputs"
    assert "forward" not in vars(member.model)  # the class's forward again


def test_a_member_is_restored_from_its_checkpoint_with_the_users_classes(monkeypatch):
    loaded = {"rnnlab_config": {"data": {"name": "set"}}}
    calls: list[tuple[Any, ...]] = []
    datamodule = SimpleNamespace(state_dict=lambda: {"classes": ["a"]})
    model: Any = _Classifier()

    def restore(checkpoint: Any, path: Any, user_classes: Any) -> Any:
        calls.append((checkpoint, path, user_classes))
        return None, datamodule, model

    monkeypatch.setattr(ens, "load_checkpoint", lambda path: loaded)
    monkeypatch.setattr(ens, "restore", restore)
    path = Path("run") / "checkpoints" / "best.ckpt"
    member = ens.load_member(path, ("my.Model",))
    assert calls == [(loaded, path, ("my.Model",))]
    assert member == Member(path, loaded["rnnlab_config"], {"classes": ["a"]}, datamodule, model)
    ens.load_member(path)
    assert calls[-1] == (loaded, path, ())

    model = SimpleNamespace()  # no averaged_output: not an Averageable
    with pytest.raises(DataError) as caught:
        ens.load_member(path)
    assert str(caught.value) == (
        f"{path} is a SimpleNamespace's; an ensemble averages classifiers, sequence regressors "
        "or forecasters"
    )


def test_the_command_writes_a_files_predictions_where_predictions_says(
    tmp_path, monkeypatch, caplog
):
    outputs = [torch.tensor([[0.2, 0.8]]), torch.tensor([[0.4, 0.6]])]
    _stand_in_command(monkeypatch, outputs, [torch.tensor([1])] * 2)
    frame = pd.DataFrame({"p_a": [0.3], "p_b": [0.7]})
    written: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ens, "predict_file", lambda cfg, members, path: frame)
    monkeypatch.setattr(ens, "write_table", lambda *args, **kwargs: written.append((args, kwargs)))
    source = tmp_path / "in.ts"
    source.write_text("x")
    target = tmp_path / "ens.csv"
    cfg = OmegaConf.create(
        {
            "runs": _runs(tmp_path, 2),
            "paths": {"output_dir": str(tmp_path / "out")},
            "input": str(source),
            "predictions": str(target),
        }
    )
    caplog.set_level(logging.INFO, logger="rnnlab.ensemble")
    ens.ensemble(cfg)
    # the setting named in a failed write's message is predictions=
    assert written == [((frame, target), {"key": "predictions"})]
    assert f"wrote 1 rows to {target}" in caplog.messages


def test_no_runs_is_refused_with_the_two_ways_to_name_them():
    empty: list[Any] = [None, []]
    for runs in empty:
        with pytest.raises(ConfigError) as caught:
            ens.member_checkpoints(runs)
        assert str(caught.value) == (
            "runs= names no runs; pass a multirun directory or a list of run directories "
            "(runs=[a,b])"
        )


def test_member_checkpoints_reads_job_folders_in_numeric_order_and_words_each_refusal(tmp_path):
    sweep = tmp_path / "sweep"
    for job in ("10", "2", "notes"):
        (sweep / job / "checkpoints").mkdir(parents=True)
        (sweep / job / "checkpoints" / "best.ckpt").write_text("")
    assert [p.parents[1].name for p in ens.member_checkpoints(str(sweep))] == ["2", "10"]

    unfinished = tmp_path / "unfinished"  # a run directory whose run wrote no best checkpoint
    (unfinished / "checkpoints").mkdir(parents=True)
    missing, plain = tmp_path / "missing", tmp_path / "plain"
    plain.mkdir()
    cases = [
        (
            unfinished,
            f"runs: {unfinished} has no {Path('checkpoints') / 'best.ckpt'} (a failed "
            "or unfinished run?); list the runs to ensemble as runs=[...]",
        ),
        (missing, f"runs: {missing} is not a directory; pass run or multirun directories"),
        (
            plain,
            f"runs: {plain} is neither a run directory (no {Path('checkpoints') / 'best.ckpt'}"
            ") nor a multirun directory (no job folders 0, 1, ...)",
        ),
    ]
    for runs, message in cases:
        with pytest.raises(DataError) as caught:
            ens.member_checkpoints([str(runs)])
        assert str(caught.value) == message

"""Checkpoints are untrusted input: a crafted one must run no code in eval, predict or a resumed
train, with or without Hydra's own blocklist, and be refused in one line naming the key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rnnlab.checkpoint import CONFIG_KEY, load_checkpoint, restore
from rnnlab.data.export import export
from rnnlab.eval import evaluate
from rnnlab.predict import predict
from rnnlab.train import train
from rnnlab.utils.errors import UserError
from tests.conftest import FAST, compose_config
from tests.test_cli import _run


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("genuine")
    train(compose_config("train", [*FAST, "trainer.max_epochs=1", "logger=none"], out))
    export("JapaneseVowels", out / "new.ts", split="test")
    return out


def _command(marker: Path) -> str:
    return f"touch {marker}"


def _set(path: str, value: Callable[[Path], Any]) -> Callable[[dict, Path], None]:
    """An edit of the stored config: ``path`` (dotted) set to ``value(marker)``."""

    def edit(config: dict, marker: Path) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value(marker)

    return edit


def _gadget(target: str) -> Callable[[Path], dict]:
    return lambda marker: {"_target_": target, "_args_": [_command(marker)]}


# (id, edit of the stored config, what the refusal names)
GADGETS = [
    (
        "prefix-allowed module attribute",
        _set("model._target_", lambda m: "rnnlab.utils.files.os.system"),
        "model._target_ is 'rnnlab.utils.files.os.system'",
    ),
    (
        "torch.optim prefix",
        _set("data._target_", lambda m: "torch.optim.adamw.torch.load"),
        "data._target_ is 'torch.optim.adamw.torch.load'",
    ),
    (
        "own class at the wrong place",
        _set("model.encoder._target_", lambda m: "rnnlab.models.classifier.SequenceClassifier"),
        "model.encoder._target_ is 'rnnlab.models.classifier.SequenceClassifier'",
    ),
    (
        "whole node replaced",
        _set("model.optimizer", _gadget("subprocess.run")),
        "model.optimizer._target_ is 'subprocess.run'",
    ),
    (
        "target nested in a value",
        _set("model.head_dropout", _gadget("os.system")),
        "model.head_dropout is a mapping where a plain value belongs",
    ),
    (
        "target nested in a list",
        _set("data.name", lambda m: [_gadget("os.system")(m)]),
        "data.name[0] nests a list or mapping inside a list",
    ),
    (
        "interpolation",
        _set("data.name", lambda m: "${oc.env:HOME}"),
        "data.name holds an interpolation",
    ),
    (
        "interpolation creating a node",
        _set("data.name", lambda m: "${oc.create:{_target_: os.system, _args_: [ls]}}"),
        "data.name holds an interpolation",
    ),
    (
        "unknown key",
        _set("model.encoder.callback", lambda m: _command(m)),
        "model.encoder.callback is not a setting of rnnlab.models.encoder.RNNEncoder",
    ),
    (
        "hydra instantiate flag",
        _set("model._convert_", lambda m: "all"),
        "model._convert_ is not a setting of",
    ),
    (
        "partial encoder",
        _set("model.encoder._partial_", lambda m: True),
        "model.encoder._partial_ is not a setting of",
    ),
    (
        "optimizer parameters given",
        _set("model.optimizer.params", lambda m: [1.0]),
        "model.optimizer.params is not a setting of torch.optim.AdamW",
    ),
    (
        "config not a mapping",
        lambda config, marker: config.clear() or config.update({"data": "os.system"}),
        "data is not a mapping",
    ),
]


@pytest.fixture
def no_hydra_lookups(monkeypatch):
    """Loading a checkpoint must not depend on Hydra's blocklist: it must not reach Hydra's
    instantiate or its dotted-path lookup at all."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"Hydra lookup while loading a checkpoint: {args}")

    monkeypatch.setattr("hydra.utils.instantiate", forbidden)
    monkeypatch.setattr("hydra._internal.utils._locate", forbidden)
    monkeypatch.setattr("hydra.utils.get_method", forbidden)
    monkeypatch.setenv("HYDRA_INSTANTIATE_ALLOWLIST_OVERRIDE", "*")


def _tampered(genuine: Path, tmp_path: Path, edit: Callable[[dict, Path], None]) -> Path:
    checkpoint = torch.load(genuine / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint[CONFIG_KEY] = copy.deepcopy(checkpoint[CONFIG_KEY])
    edit(checkpoint[CONFIG_KEY], tmp_path / "marker")
    path = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(("edit", "named"), [g[1:] for g in GADGETS], ids=[g[0] for g in GADGETS])
def test_crafted_checkpoint_runs_nothing_in_eval_or_predict(
    genuine, tmp_path, no_hydra_lookups, edit, named
):
    ckpt = _tampered(genuine, tmp_path, edit)
    with pytest.raises(UserError, match="refusing to load it") as refused:
        restore(load_checkpoint(ckpt), ckpt)
    assert named in str(refused.value) and "\n" not in str(refused.value)

    eval_cfg = compose_config("eval", [f"ckpt_path={ckpt}"], tmp_path / "eval")
    with pytest.raises(UserError, match="refusing to load it"):
        evaluate(eval_cfg)
    output = tmp_path / "preds.csv"
    predict_cfg = compose_config(
        "predict",
        [f"ckpt_path={ckpt}", f"input={genuine / 'new.ts'}", f"output={output}"],
        tmp_path / "predict",
    )
    with pytest.raises(UserError, match="refusing to load it"):
        predict(predict_cfg)
    assert not (tmp_path / "marker").exists()
    assert not output.exists() and not (tmp_path / "eval" / "metrics.json").exists()


def test_genuine_checkpoint_still_loads_without_hydra(genuine, no_hydra_lookups):
    ckpt = genuine / "checkpoints" / "best.ckpt"
    seed, datamodule, model = restore(load_checkpoint(ckpt), ckpt)
    assert seed == 42 and datamodule.classes == [str(i) for i in range(1, 10)]
    assert model.encoder.hidden_size == 16


def test_crafted_checkpoint_is_refused_by_resume_before_anything_runs(genuine, tmp_path):
    ckpt = _tampered(genuine, tmp_path, GADGETS[0][1])
    cfg = compose_config("train", [*FAST, f"ckpt_path={ckpt}", "logger=none"], tmp_path / "run")
    with pytest.raises(UserError, match=r"refusing to load it|cannot resume"):
        train(cfg)
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


class Payload:
    """Anything but tensors and plain types: unpickling it would run a class's code."""


def test_pickled_checkpoint_given_to_resume_is_refused_in_one_line(genuine, tmp_path):
    checkpoint = torch.load(genuine / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["extra"] = Payload()
    torch.save(checkpoint, tmp_path / "pickled.ckpt")
    result = _run(
        ["-m", "rnnlab.train", *FAST, "ckpt_path=pickled.ckpt", "hydra.run.dir=run"], tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: cannot load checkpoint pickled.ckpt safely")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()

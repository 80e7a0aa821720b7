"""Malformed checkpoints are refused in one line before anything uses them: the file's bytes, the
stored config's keys, values and sizes (checked against the weights before any module is
allocated), the data state against the config, and on resume Lightning's own state."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from rnnlab.checkpoint import CONFIG_KEY, DATA_KEY, load_checkpoint, plan_resume, restore
from rnnlab.checkpoint.stored import Malformed
from rnnlab.train import train
from rnnlab.utils.errors import DataError, UserError
from tests.conftest import FAST, compose_config
from tests.test_cli import _run

CLASSIFY = [*FAST, "data.name=BasicMotions", "trainer.max_epochs=1", "logger=none"]
LANGUAGE = [
    *FAST,
    "experiment=charlm",
    "trainer.max_epochs=1",
    "logger=none",
    "model.embedding_size=8",
    "data.batch_size=4",
    "data.bptt=16",
    "data.ngram_max_order=3",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The last checkpoints of a short classification run and a short language-model run."""
    root = tmp_path_factory.mktemp("malformed")
    corpus = root / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    train(compose_config("train", CLASSIFY, root / "classify"))
    train(compose_config("train", [*LANGUAGE, f"data.file={corpus}"], root / "lm"))
    return {
        "classify": root / "classify" / "checkpoints" / "last.ckpt",
        "lm": root / "lm" / "checkpoints" / "last.ckpt",
    }


def _edited(source: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``source`` (and its best checkpoint, as a resume finds it) with ``edit``
    applied to the loaded checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "best.ckpt").write_bytes((source.parent / "best.ckpt").read_bytes())
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, folder / "last.ckpt")
    return folder / "last.ckpt"


def _set(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(checkpoint: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node: Any = checkpoint
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return edit


def _refused(path: Path) -> str:
    with pytest.raises(UserError) as refused:
        restore(load_checkpoint(path), path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message, message
    return message


# --- the file ----------------------------------------------------------------------------------
def test_changed_first_bytes_are_refused_in_one_line(runs, tmp_path):
    data = bytearray(runs["classify"].read_bytes())
    data[0:2] = b"\xff\xfe"
    path = tmp_path / "changed.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"cannot load checkpoint .* safely"):
        load_checkpoint(path)


def test_a_tensor_rebuilt_with_unexpected_arguments_is_refused_in_one_line(runs, tmp_path):
    # the pickle calls torch._tensor._rebuild_from_type_v2, which weights_only allows, with one
    # argument where it takes four: a TypeError while loading
    pickled = b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(K\x01tR."
    source = zipfile.ZipFile(io.BytesIO(runs["classify"].read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = pickled if info.filename.endswith("data.pkl") else source.read(info)
            target.writestr(info, data)
    path = tmp_path / "rebuilt.ckpt"
    path.write_bytes(out.getvalue())
    with pytest.raises(DataError, match=r"cannot load checkpoint .* safely \(TypeError"):
        load_checkpoint(path)


# --- the stored config -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dotted", "value", "named"),
    [
        ("model.encoder.1", "x", "has the key 1, not a string"),
        ("model.head_dropout", 5.0, "model cannot be built (dropout probability"),
        ("seed", -5, "seed is -5, not an integer in [0, 4294967295]"),
        ("seed", 2**80, "not an integer in [0, 4294967295]"),
        ("data.seed", "x", "data.seed must be an integer >= 0"),
    ],
    ids=["non-string key", "head_dropout=5.0", "seed=-5", "seed=2**80", "data.seed='x'"],
)
def test_a_stored_config_value_that_cannot_work_is_refused(runs, tmp_path, dotted, value, named):
    if dotted == "model.encoder.1":

        def edit(checkpoint: dict[str, Any]) -> None:
            checkpoint[CONFIG_KEY]["model"]["encoder"][1] = "x"

    else:
        edit = _set(f"{CONFIG_KEY}.{dotted}", value)
    assert named in _refused(_edited(runs["classify"], tmp_path, edit))


@pytest.mark.parametrize(
    ("task", "dotted", "value"),
    [
        ("classify", "model.encoder.hidden_size", 10**7),
        ("classify", "model.encoder.num_layers", 10**9),
        ("classify", "model.num_classes", 3e9),
        ("lm", "model.vocab_size", 10**9),
        ("lm", "model.embedding_size", 10**8),
    ],
)
def test_sizes_are_checked_against_the_weights_before_anything_is_built(
    runs, tmp_path, monkeypatch, task, dotted, value
):
    built: list[str] = []
    original = torch.nn.Module.__init__

    def spy(self: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    path = _edited(runs[task], tmp_path, _set(f"{CONFIG_KEY}.{dotted}", value))
    checkpoint = load_checkpoint(path)
    monkeypatch.setattr(torch.nn.Module, "__init__", spy)
    with pytest.raises(Malformed) as refused:
        restore(checkpoint, path)
    assert dotted in str(refused.value)
    assert "more than the" in str(refused.value) or "whole number" in str(refused.value)
    assert built == []  # refused before any module, even on the meta device


def test_weights_of_another_shape_than_the_config_says_are_refused_by_name(runs, tmp_path):
    path = _edited(runs["classify"], tmp_path, _set(f"{CONFIG_KEY}.model.num_classes", 3))
    assert "the weights' head.1.weight is (4, 32)" in _refused(path)


# --- the data state ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "named"),
    [
        (torch.zeros(3), "shift has shape (3,), not (6,)"),
        (torch.zeros(6, dtype=torch.float64), "shift has dtype torch.float64"),
        ([0.0] * 6, "shift is a list, not a tensor"),
    ],
    ids=["shape", "dtype", "list"],
)
def test_a_normaliser_shift_of_the_wrong_shape_or_type_is_refused(runs, tmp_path, value, named):
    path = _edited(runs["classify"], tmp_path, _set(f"{DATA_KEY}.normalizer.shift", value))
    assert named in _refused(path)


def test_a_normaliser_scale_of_zero_is_refused(runs, tmp_path):
    path = _edited(runs["classify"], tmp_path, _set(f"{DATA_KEY}.normalizer.scale", torch.zeros(6)))
    assert "scale holds a value below" in _refused(path)


@pytest.mark.parametrize("change", [-1, 1], ids=["shorter", "longer"])
def test_a_vocabulary_that_does_not_match_the_embedding_is_refused(runs, tmp_path, change):
    def edit(checkpoint: dict[str, Any]) -> None:
        vocab = checkpoint[DATA_KEY]["vocab"]
        checkpoint[DATA_KEY]["vocab"] = vocab[:-1] if change < 0 else [*vocab, ord("Z")]

    message = _refused(_edited(runs["lm"], tmp_path, edit))
    assert "but the model's vocab_size is" in message


@pytest.mark.slow
def test_generate_with_a_vocabulary_shorter_than_the_embedding_ends_in_one_line(runs, tmp_path):
    def edit(checkpoint: dict[str, Any]) -> None:
        checkpoint[DATA_KEY]["vocab"] = checkpoint[DATA_KEY]["vocab"][:-1]

    _edited(runs["lm"], tmp_path / "checkpoints", edit)
    done = _run(
        [
            "-m",
            "rnnlab.generate",
            "ckpt_path=checkpoints/last.ckpt",
            "length=5",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "vocab_size" in lines[0], done.stderr[-2000:]
    assert not (tmp_path / "run").exists()


# --- Lightning's state, on resume --------------------------------------------------------------
def _resume_config(checkpoint: Path, run_dir: Path) -> Any:
    """The run config a resume of ``checkpoint`` with the interrupted run's settings has."""
    stored = torch.load(checkpoint, weights_only=True)[CONFIG_KEY]
    cfg = OmegaConf.create(stored)
    with open_dict(cfg):
        cfg.ckpt_path = str(checkpoint)
        cfg.paths.output_dir = str(run_dir)
        cfg.trainer.max_epochs = 2
    return cfg


def _early_stopping(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(checkpoint: dict[str, Any]) -> None:
        key = next(k for k in checkpoint["callbacks"] if k.startswith("EarlyStopping"))
        checkpoint["callbacks"][key][field] = value

    return edit


def _checkpoint_callback(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(checkpoint: dict[str, Any]) -> None:
        key = next(k for k in checkpoint["callbacks"] if k.startswith("ModelCheckpoint"))
        checkpoint["callbacks"][key][field] = value

    return edit


TAMPERED = [
    ("stopped_epoch='x'", _early_stopping("stopped_epoch", "x"), "EarlyStopping.stopped_epoch"),
    ("callbacks=[1,2]", _set("callbacks", [1, 2]), "callbacks is not a mapping"),
    (
        "loop counter 'x'",
        _set("loops.fit_loop.epoch_progress.current.processed", "x"),
        "loops.fit_loop.epoch_progress.current.processed is 'x'",
    ),
    (
        "optimiser lr='x'",
        _set("optimizer_states.0.param_groups.0.lr", "x"),
        "param_groups[0].lr is 'x'",
    ),
    ("data state 'x'", _set(DATA_KEY, "x"), "the data state is not a mapping"),
    (
        "best_model_path=/etc/passwd",
        _checkpoint_callback("best_model_path", "/etc/passwd"),
        "ModelCheckpoint.best_model_path is '/etc/passwd'",
    ),
    ("global_step=-1", _set("global_step", -1), "global_step is -1, not a count"),
]


@pytest.mark.parametrize(("edit", "named"), [t[1:] for t in TAMPERED], ids=[t[0] for t in TAMPERED])
def test_tampered_lightning_state_is_refused_before_the_resumed_run_starts(
    runs, tmp_path, edit, named
):
    path = _edited(runs["classify"], tmp_path / "old", edit)
    with pytest.raises(UserError) as refused:
        plan_resume(_resume_config(path, tmp_path / "new"))
    assert named in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "new").exists()


def test_the_genuine_checkpoint_still_resumes_its_plan(runs, tmp_path):
    path = _edited(runs["classify"], tmp_path / "old", lambda checkpoint: None)
    point = plan_resume(_resume_config(path, tmp_path / "new"))
    assert point is not None and point.epochs_done == 1


@pytest.mark.slow
def test_a_resume_of_tampered_state_ends_in_one_line_and_leaves_no_run(runs, tmp_path):
    _edited(runs["classify"], tmp_path / "checkpoints", _early_stopping("stopped_epoch", "x"))
    done = _run(
        [
            "-m",
            "rnnlab.train",
            *CLASSIFY,
            "trainer.max_epochs=2",
            "ckpt_path=checkpoints/last.ckpt",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "EarlyStopping.stopped_epoch is 'x'" in lines[0], lines
    assert not (tmp_path / "run").exists()

"""Fast in-process checks of the checkpoint loader's format (``format.py``): each calls a
function directly and checks its exact outcome (what is refused and in which words, what is
stored and loaded), so a changed operator, constant or argument in the module fails one of
them (scripts/mutation.py runs these first)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from rnnlab.checkpoint import (
    CONFIG_KEY,
    DATA_KEY,
    FORMAT_KEY,
    METRICS_KEY,
    AtomicCheckpointIO,
    StoreRunState,
    epoch_metrics,
    load_checkpoint,
    save_atomically,
    stored_data_state,
)
from rnnlab.utils.errors import ConfigError, DataError

FORMAT1 = Path(__file__).parent / "fixtures" / "checkpoint_format1.ckpt"


class Payload:
    """Anything but tensors and plain types: only a full unpickler would rebuild it."""


class StandInData:
    """A DataModule's part in a checkpoint: its state, and what it was given back."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.loaded: list[Any] = []
        self.fail = fail

    def state_dict(self) -> dict[str, Any]:
        return {"classes": ["a", "b"]}

    def load_state_dict(self, state: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.loaded.append(state)


def _saved(tmp_path: Path, content: Any, name: str = "c.ckpt") -> Path:
    path = tmp_path / name
    torch.save(content, path)
    return path


# --- load_checkpoint ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_a_path_that_is_no_file_is_refused_with_the_fix(tmp_path, kind):
    path = tmp_path / "none.ckpt"
    if kind == "folder":
        path.mkdir()
    with pytest.raises(DataError) as refused:
        load_checkpoint(str(path))
    assert str(refused.value) == (
        f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/best.ckpt"
    )


def test_a_pickled_object_is_refused_without_echoing_torchs_advice(tmp_path):
    path = _saved(tmp_path, {CONFIG_KEY: {}, "extra": Payload()})
    with pytest.raises(DataError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"cannot load checkpoint {path} safely; it is truncated, corrupted, or holds objects "
        "other than tensors and plain types"
    )
    assert isinstance(refused.value.__cause__, Exception)


def test_a_truncated_file_is_refused_naming_the_reason_in_one_line(tmp_path):
    whole = _saved(tmp_path, {CONFIG_KEY: {}, "w": torch.ones(3)}, "whole.ckpt").read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as refused:
        load_checkpoint(path)
    text = str(refused.value)
    assert text.startswith(
        f"cannot load checkpoint {path} safely (RuntimeError: PytorchStreamReader failed reading "
    )
    assert text.endswith(
        "); it is truncated, corrupted, or holds objects other than tensors and plain types"
    )
    assert "\n" not in text and isinstance(refused.value.__cause__, RuntimeError)


@pytest.mark.parametrize("content", [[1, 2], {"state_dict": {}}], ids=["list", "no-config"])
def test_a_file_without_a_stored_config_is_no_rnnlab_checkpoint(tmp_path, content):
    path = _saved(tmp_path, content)
    with pytest.raises(DataError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == f"{path} is not an rnnlab checkpoint (no stored run config)"


@pytest.mark.parametrize("version", [0, -1, 3, True, 1.0, "1", None])
def test_a_format_outside_one_to_two_is_refused(tmp_path, version):
    path = _saved(tmp_path, {CONFIG_KEY: {}, FORMAT_KEY: version})
    with pytest.raises(DataError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"checkpoint {path} is in format {version!r}; this rnnlab reads formats 1 to 2: load it "
        "with the rnnlab release that wrote it, or a newer one"
    )


@pytest.mark.parametrize("version", [1, 2, "absent"])
def test_formats_one_and_two_load_as_they_were_saved(tmp_path, version):
    content: dict[str, Any] = {CONFIG_KEY: {"seed": 3}, "w": torch.arange(3.0)}
    if version != "absent":
        content[FORMAT_KEY] = version
    loaded = load_checkpoint(_saved(tmp_path, content))
    assert set(loaded) == set(content) and loaded[CONFIG_KEY] == {"seed": 3}
    assert loaded["w"].device.type == "cpu"
    torch.testing.assert_close(loaded["w"], torch.arange(3.0), rtol=0, atol=0)


def test_torchs_switch_to_full_unpickling_does_not_reach_the_loader(tmp_path, monkeypatch):
    # a setting for other programs' sake must not make a crafted checkpoint run code here
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = _saved(tmp_path, {CONFIG_KEY: {}, "extra": Payload()})
    with pytest.raises(DataError, match=r"^cannot load checkpoint .* safely; it is truncated"):
        load_checkpoint(path)


def test_a_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path):
    """Its tensors' storages say ``cuda:0`` (written here by renaming ``cpu`` in the pickle,
    which is how torch records where a storage lived); they load onto the CPU."""
    whole = io.BytesIO()
    torch.save({CONFIG_KEY: {}, "w": torch.arange(3.0)}, whole)
    written = io.BytesIO()
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(written, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                assert data.count(b"X\x03\x00\x00\x00cpu") == 1
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            target.writestr(info, data)
    path = tmp_path / "gpu.ckpt"
    path.write_bytes(written.getvalue())
    loaded = load_checkpoint(path)
    assert loaded["w"].device.type == "cpu" and loaded["w"].tolist() == [0.0, 1.0, 2.0]


def test_the_format1_fixture_loads():
    assert FORMAT_KEY not in load_checkpoint(FORMAT1)


# --- stored_data_state, save_atomically, AtomicCheckpointIO, epoch_metrics ----------------------
def test_the_data_state_comes_from_its_key_before_the_class_name():
    name = StandInData.__qualname__
    assert stored_data_state({DATA_KEY: 1, name: 2}, StandInData()) == 1
    assert stored_data_state({name: 2}, StandInData()) == 2
    assert stored_data_state({"other": 2}, StandInData()) is None


def test_save_atomically_writes_the_checkpoint_and_no_temporary_file(tmp_path):
    path = tmp_path / "a.ckpt"
    save_atomically({"x": torch.ones(2)}, path)
    assert sorted(os.listdir(tmp_path)) == ["a.ckpt"]
    torch.testing.assert_close(torch.load(path, weights_only=True)["x"], torch.ones(2))


def test_the_atomic_writer_writes_through_lightnings_and_keeps_its_refusals(tmp_path):
    path = tmp_path / "sub" / "b.ckpt"
    path.parent.mkdir()
    AtomicCheckpointIO().save_checkpoint({"y": torch.zeros(1)}, path)
    assert sorted(os.listdir(path.parent)) == ["b.ckpt"]
    assert torch.load(path, weights_only=True)["y"].tolist() == [0.0]
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint({"y": 1}, tmp_path / "c.ckpt", {"any": 1})
    assert not (tmp_path / "c.ckpt").exists()


def test_epoch_metrics_are_plain_floats_and_empty_when_absent():
    metrics = epoch_metrics({METRICS_KEY: {"val/loss": torch.tensor(0.5), "n": 2}})
    assert metrics == {"val/loss": 0.5, "n": 2.0}
    assert all(type(v) is float for v in metrics.values())
    assert epoch_metrics({}) == {}


# --- StoreRunState ------------------------------------------------------------------------------
def _trainer(datamodule: Any) -> Any:
    return SimpleNamespace(datamodule=datamodule, callback_metrics={"val/acc": torch.tensor(0.25)})


def test_store_run_state_keeps_the_resolved_config():
    cfg = OmegaConf.create({"a": 2, "b": "${a}", "c": {"d": "x${a}"}})
    assert StoreRunState(cfg).config == {"a": 2, "b": 2, "c": {"d": "x2"}}


def test_each_saved_checkpoint_gets_config_metrics_format_and_one_data_state():
    callback = StoreRunState(OmegaConf.create({"seed": 1}))
    datamodule = StandInData()
    checkpoint: dict[str, Any] = {StandInData.__qualname__: {"old": 1}, "keep": 1}
    callback.on_save_checkpoint(_trainer(datamodule), None, checkpoint)
    assert checkpoint == {
        "keep": 1,
        CONFIG_KEY: {"seed": 1},
        METRICS_KEY: {"val/acc": 0.25},
        FORMAT_KEY: 2,
        DATA_KEY: {"classes": ["a", "b"]},
    }
    without: dict[str, Any] = {}
    callback.on_save_checkpoint(_trainer(None), None, without)
    assert set(without) == {CONFIG_KEY, METRICS_KEY, FORMAT_KEY}
    bare: dict[str, Any] = {}
    trainer = SimpleNamespace(callback_metrics={})
    callback.on_save_checkpoint(trainer, None, bare)
    assert DATA_KEY not in bare and bare[FORMAT_KEY] == 2
    only_ours: dict[str, Any] = {}  # Lightning left no copy under the class's name
    callback.on_save_checkpoint(_trainer(datamodule), None, only_ours)
    assert only_ours[DATA_KEY] == {"classes": ["a", "b"]}


def _load(datamodule: Any, checkpoint: dict[str, Any]) -> None:
    callback = StoreRunState(OmegaConf.create({}))
    callback.on_load_checkpoint(_trainer(datamodule), None, checkpoint)


def test_a_resumed_run_gets_the_stored_data_state_back_once():
    datamodule = StandInData()
    _load(datamodule, {DATA_KEY: {"s": 1}})
    assert datamodule.loaded == [{"s": 1}]
    _load(datamodule, {DATA_KEY: {"s": 2}, StandInData.__qualname__: {"s": 3}})  # format 1
    _load(datamodule, {})  # nothing stored
    _load(None, {DATA_KEY: {"s": 4}})  # no DataModule
    assert datamodule.loaded == [{"s": 1}]
    callback = StoreRunState(OmegaConf.create({}))
    bare = SimpleNamespace(callback_metrics={})  # a trainer without the attribute at all
    callback.on_load_checkpoint(bare, None, {DATA_KEY: {"s": 5}})


def test_a_data_state_the_datamodule_refuses_ends_in_one_line():
    own = ConfigError("data.x is wrong; set data.x=1")
    with pytest.raises(ConfigError) as kept:
        _load(StandInData(own), {DATA_KEY: {}})
    assert kept.value is own
    with pytest.raises(DataError) as refused:
        _load(StandInData(KeyError("normalizer")), {DATA_KEY: {}})
    assert str(refused.value) == (
        "the resumed checkpoint's data state is not what rnnlab wrote (KeyError: 'normalizer')"
    )
    assert isinstance(refused.value.__cause__, KeyError)

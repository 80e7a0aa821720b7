"""The data name of a run on the user's own .ts files is the files' name (the data config's
default archive name says nothing about them), and every place that shows it agrees: the saved
config, the checkpoint, TensorBoard's HParams and figure titles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from rnnlab.checkpoint import CONFIG_KEY
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.data.regression import RegressionDataModule
from rnnlab.data.sequences import files_data_name
from tests.conftest import TS_HEADER, write_ts
from tests.test_cli import _run

TRAIN_ROWS = [f"{i},{i + 1},{i % 3}:{'ab'[i % 2]}" for i in range(12)]
TEST_ROWS = ["1,2,3:a", "3,2,1:b"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("MyData_TRAIN.ts", "MyData"),
        ("data/mydata_train.ts", "mydata"),
        ("data/MyData.train.ts", "MyData"),
        ("data/Wafer/TRAIN.ts", "Wafer"),
        ("data/Wafer/train.ts", "Wafer"),
        ("sales_2020.ts", "sales_2020"),
        ("Données_TRAIN.ts", "Données"),
        ("My Data (v2)_TRAIN.ts", "My_Data_v2"),
        ("${seed}_TRAIN.ts", "seed"),  # never an interpolation in the config
    ],
)
def test_files_name_the_data(path, name):
    assert files_data_name(path) == name


def _files(tmp_path: Path, stem: str = "MyData") -> dict[str, str]:
    return {
        "train_file": write_ts(tmp_path / f"{stem}_TRAIN.ts", TRAIN_ROWS),
        "test_file": write_ts(tmp_path / f"{stem}_TEST.ts", TEST_ROWS),
    }


def test_own_files_name_the_data_unless_a_name_is_given(tmp_path):
    files = _files(tmp_path)
    for module in (
        ClassificationDataModule(**files),
        ClassificationDataModule(name="JapaneseVowels", **files),  # the config's default
        ClassificationDataModule(name=None, **files),
    ):
        assert module.name == module.display_name() == "MyData"
        assert module.settled_config() == {"name": "MyData"}
    named = ClassificationDataModule(name="Vowels v2", **files)
    assert named.name == named.display_name() == "Vowels v2"
    assert ClassificationDataModule().display_name() == "JapaneseVowels"  # no files: the archive


def test_own_regression_files_name_the_data(tmp_path):
    header = TS_HEADER.replace("@classLabel true a b", "@targetLabel true")
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"Prices_{split}.ts").write_text(header + "1,2,3:0.5\n2,3:1.5\n")
    files = {f"{k}_file": str(tmp_path / f"Prices_{k.upper()}.ts") for k in ("train", "test")}
    assert RegressionDataModule(name="Covid3Month", **files).name == "Prices"
    assert RegressionDataModule(name="Tecator", **files).name == "Tecator"


def test_a_run_on_own_files_is_named_after_them_everywhere(tmp_path):
    _files(tmp_path)
    result = _run(
        [
            "-m",
            "rnnlab.train",
            "data.train_file=MyData_TRAIN.ts",
            "data.test_file=MyData_TEST.ts",
            "data.val_fraction=0.34",
            "trainer.max_epochs=1",
            "model.encoder.hidden_size=4",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "run"
    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert saved.data.name == "MyData"
    # the rest as Hydra saved it: interpolations unresolved, the user's relative paths kept
    assert OmegaConf.to_container(saved)["paths"]["output_dir"] == "${hydra:runtime.output_dir}"
    assert saved.data.train_file == "MyData_TRAIN.ts"
    stored = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)[CONFIG_KEY]
    assert stored["data"]["name"] == "MyData"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["data.name"].string_value == "MyData"

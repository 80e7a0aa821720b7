"""Every option of every config group composes, and every object in it instantiates."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import OmegaConf

from rnnlab.callbacks import progress
from rnnlab.data.export import export
from rnnlab.train import build_data_and_model, build_trainer
from rnnlab.utils.config import config_dir, instantiate_group
from tests.conftest import compose_config

GROUPS = [
    "data",
    "model",
    "model/encoder",
    "model/optimizer",
    "model/scheduler",
    "callbacks",
    "logger",
    "trainer",
    "paths",
    "hydra",
    "experiment",
    "hparams_search",
    "debug",
]
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((Path(config_dir()) / group).glob("*.yaml"))
]


# Data and model options come in task pairs; each is composed with its partner.
TASKS = {
    "classification": "classifier",
    "regression": "regressor",
    "forecast": "forecaster",
    "text": "language_model",
    "copy": "tagger",
}
ALIASES = {"ucr": "classification", "ucr_regression": "regression"}  # former names
# the adding problem's regressor needs its metrics and baseline, which its experiment sets
PROBES = {"adding": ["experiment=adding"]}
PARTNER = {
    "data": lambda option: PROBES.get(option) or [f"model={TASKS[ALIASES.get(option, option)]}"],
    "model": lambda option: [f"data={next(d for d, m in TASKS.items() if m == option)}"],
}


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group: str, option: str, tmp_path: Path):
    if group == "hydra":
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("train", [f"hydra={option}"], return_hydra_config=True)
        assert cfg.hydra.run.dir.startswith(f"{cfg.paths.log_dir}/train/runs/")
        assert cfg.hydra.job.chdir is False  # relative data paths keep working
        return
    partner = PARTNER[group](option) if group in PARTNER else []
    if option == "forecast_csv":  # its data file is the user's to name: give it the shipped one
        partner = [f"data.file={export('co2', tmp_path / 'co2.csv')}"]
    overrides = [f"{group}={option}", *partner, "trainer.accelerator=cpu"]
    cfg = compose_config("train", overrides, tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    datamodule, model = build_data_and_model(cfg)
    assert isinstance(datamodule, L.LightningDataModule)
    assert isinstance(model, L.LightningModule)
    model.configure_optimizers()
    for item in instantiate_group(cfg.get("callbacks")):
        assert isinstance(item, L.Callback)
    instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer, L.Trainer)


def test_monitor_is_named_once_and_referenced_everywhere(tmp_path: Path):
    cfg = compose_config("train", ["monitor=val/f1", "monitor_mode=max"], tmp_path)
    assert cfg.callbacks.model_checkpoint.monitor == "val/f1"
    assert cfg.callbacks.early_stopping.monitor == "val/f1"
    assert cfg.callbacks.early_stopping.mode == "max"
    assert cfg.model.monitor == "val/f1"
    assert cfg.model.scheduler.mode == "max"
    # the defaults name it once; an experiment whose task has its own metric renames it once
    named = {
        p.name: p.read_text().count("monitor: val/") for p in Path(config_dir()).rglob("*.yaml")
    }
    assert named.pop("train.yaml") == 1
    assert set(named.values()) <= {0, 1}


def test_generate_config_composes(tmp_path: Path):
    cfg = compose_config("generate", ["ckpt_path=x.ckpt", "prompt=Hi"], tmp_path)
    assert (cfg.prompt, cfg.length, cfg.top_k, cfg.output) == ("Hi", 500, 0, None)


def test_eval_config_composes(tmp_path: Path):
    cfg = compose_config("eval", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt"
    instantiate(cfg.trainer, logger=False)


@pytest.mark.parametrize("scheduler", ["null", "default"])
def test_scheduler_is_optional_and_watches_the_monitor(tmp_path: Path, scheduler: str):
    overrides = ["model.scheduler=null"] if scheduler == "null" else []
    cfg = compose_config("train", overrides, tmp_path)
    _, model = build_data_and_model(cfg)
    configured = model.configure_optimizers()
    if scheduler == "null":
        assert isinstance(configured, torch.optim.AdamW)
    else:
        assert configured["lr_scheduler"]["monitor"] == cfg.monitor


def test_progress_bar_redraws_at_most_every_interval_and_at_each_end(monkeypatch):
    clock = iter([0.0, 0.1, 0.2, 0.3, 0.35, 0.36])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.ThrottledProgressBar(min_interval=0.25)
    redrawn = [n for n in (1, 2, 3, 4, 7, 8) if bar._should_update(n, 8)]
    assert redrawn == [1, 4, 8]  # the first batch, once 0.25 s passed, the last batch


@pytest.mark.parametrize(
    ("overrides", "terminal", "bar"),
    [
        (["trainer.enable_progress_bar=false"], True, False),
        ([], False, False),  # a file, a pipe, a cluster job's log: a line per epoch instead
        ([], True, True),
    ],
)
def test_progress_bar_only_when_enabled_and_on_a_terminal(
    tmp_path, monkeypatch, overrides, terminal, bar
):
    monkeypatch.setattr(progress, "stdout_is_terminal", lambda: terminal)
    cfg = compose_config("train", overrides, tmp_path)
    assert "progress_bar" in cfg.callbacks
    trainer = build_trainer(cfg)  # the Trainer itself refuses a bar it was told not to show
    bars = [c for c in trainer.callbacks if isinstance(c, ProgressBar)]
    assert [type(c) for c in bars] == ([progress.ThrottledProgressBar] if bar else [])
    assert sum(isinstance(c, progress.EpochLines) for c in trainer.callbacks) == 1


def test_encoder_defaults_in_python_equal_the_shipped_config():
    """Python users and the command line get the same model: one source of truth."""
    from rnnlab.models.encoder import RNNEncoder

    loaded = OmegaConf.load(Path(config_dir()) / "model" / "encoder" / "rnn.yaml")
    shipped = OmegaConf.to_container(loaded)
    assert isinstance(shipped, dict)
    parameters = inspect.signature(RNNEncoder).parameters
    for key, value in shipped.items():
        if key in ("_target_", "input_size"):
            continue
        assert parameters[key].default == value, key
    assert set(parameters) - {"input_size"} <= set(shipped)

"""The allow-list: rnnlab's classes are those its own configs build, where they build them; a
user's own classes load from checkpoints when, and only when, the current command's
``user_classes`` lists them exactly; training refuses classes its checkpoints could not load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rnnlab.checkpoint import CONFIG_KEY, allowed_places, load_checkpoint, restore
from rnnlab.eval import evaluate
from rnnlab.train import train
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError, DataError
from tests.conftest import compose_config
from tests.own_classes import OwnEncoder, OwnVowels
from tests.test_cli import _run

DATA, ENCODER = "tests.own_classes.OwnVowels", "tests.own_classes.OwnEncoder"
OWN = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "model.encoder.hidden_size=4",
    "callbacks.learning_rate_monitor=null",
    "logger=none",
    f"data._target_={DATA}",
    f"model.encoder._target_={ENCODER}",
]
LISTED = f"user_classes=[{DATA},{ENCODER}]"


def test_rnnlab_classes_are_allowed_where_its_configs_build_them():
    places = allowed_places()
    for place, group in [("data", "data"), ("model", "model"), ("model.encoder", "model/encoder")]:
        files = (Path(config_dir()) / group).glob("*.yaml")
        targets = {OmegaConf.load(f).get("_target_") for f in files} - {None}
        assert set(places[place].classes) == targets, place
    assert "rnnlab.models.lstm_fcn.LSTMFCNEncoder" in places["model.encoder"].classes
    assert places["model.optimizer"].classes["torch.optim.AdamW"] is torch.optim.AdamW
    assert places["model.scheduler"].optional and places["model.scheduler"].partial
    assert not any(places[p].partial or places[p].optional for p in ("data", "model"))


@pytest.fixture(scope="module")
def own_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("own")
    metrics = train(compose_config("train", [*OWN, LISTED], out))
    return out / "checkpoints" / "best.ckpt", metrics


def test_listed_classes_train_and_their_checkpoint_loads_when_listed_again(own_run, tmp_path):
    ckpt, trained = own_run
    _, datamodule, model = restore(load_checkpoint(ckpt), ckpt, [DATA, ENCODER])
    assert type(datamodule) is OwnVowels and type(model.encoder) is OwnEncoder
    metrics = evaluate(compose_config("eval", [f"ckpt_path={ckpt}", LISTED], tmp_path))
    assert metrics["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_without_the_listing_the_checkpoint_is_refused_naming_the_key(own_run, tmp_path):
    ckpt, _ = own_run
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint[CONFIG_KEY]["user_classes"] == [DATA, ENCODER]  # stored, never read
    with pytest.raises(DataError) as refused:
        restore(checkpoint, ckpt)
    assert str(refused.value).startswith(f"checkpoint {ckpt}: data._target_ is '{DATA}', not one")
    assert str(refused.value).endswith(
        "(or a class of your own listed in user_classes); refusing to load it"
    )
    with pytest.raises(DataError, match=rf"model\.encoder\._target_ is '{ENCODER}', not one of"):
        restore(checkpoint, ckpt, [DATA])
    result = _run(["-m", "rnnlab.eval", f"ckpt_path={ckpt}", "hydra.run.dir=out"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: checkpoint {ckpt}: data._target_ is '{DATA}'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_training_refuses_an_unlisted_class_before_it_starts(tmp_path):
    cfg = compose_config("train", [*OWN, f"user_classes=[{DATA}]"], tmp_path)
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert str(refused.value).startswith(f"model.encoder._target_ is '{ENCODER}', not one of ")
    assert "listed in user_classes" in str(refused.value)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("place", "target"),
    [
        ("model", ENCODER),  # allowed, but as an encoder
        ("data", ENCODER),
        ("model.encoder", DATA),
        ("model.encoder", f"{ENCODER}X"),  # starts like an allowed path
        ("model.encoder", f"{ENCODER}.forward"),
        ("model.encoder", "tests.own_classes.not_a_class"),
    ],
)
def test_a_listed_class_loads_only_at_its_own_place_by_its_exact_path(
    own_run, tmp_path, place, target
):
    ckpt, _ = own_run
    checkpoint = load_checkpoint(ckpt)
    node = checkpoint[CONFIG_KEY]
    for key in place.split("."):
        node = node[key]
    node["_target_"] = target
    path = tmp_path / "moved.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(DataError) as refused:
        restore(load_checkpoint(path), path, [DATA, ENCODER])
    message = str(refused.value)
    assert message.startswith(f"checkpoint {path}: {place}._target_ is '{target}', not one of ")
    assert message.endswith("refusing to load it") and "\n" not in message


def test_a_class_a_checkpoint_names_is_never_imported(own_run, tmp_path):
    ckpt, _ = own_run
    checkpoint = load_checkpoint(ckpt)
    checkpoint[CONFIG_KEY]["data"]["_target_"] = "tabnanny.Whitespace"
    assert "tabnanny" not in sys.modules
    with pytest.raises(DataError, match=r"data\._target_ is 'tabnanny\.Whitespace', not one of"):
        restore(checkpoint, ckpt)
    assert "tabnanny" not in sys.modules


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        (["os.path.join"], "user_classes: 'os.path.join' is a function, not a class"),
        (["tests.own_classes.not_a_class"], "user_classes: 'tests.own_classes.not_a_class' is a"),
        (["tests.own_classes.Gone"], "user_classes: 'tests.own_classes.Gone' names nothing in"),
        (
            ["tests.own_classes.NotBuilt"],
            "user_classes: 'tests.own_classes.NotBuilt' is not a LightningDataModule, "
            "LightningModule or torch.nn.Module, the classes a run builds (at data, model and "
            "model.encoder)",
        ),
        (["no_such_package.Data"], "user_classes: cannot import no_such_package for 'no_such"),
        (["OwnVowels"], "user_classes: 'OwnVowels' is not a dotted path such as pkg.module.Class"),
        (DATA, f"user_classes={DATA} is not a list; write user_classes=[{DATA}]"),
    ],
)
def test_a_listed_path_that_is_no_buildable_class_is_refused_in_one_line(listed, message):
    with pytest.raises(ConfigError) as refused:
        allowed_places(listed)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_eval_refuses_a_bad_listing_before_it_loads(own_run, tmp_path):
    ckpt, _ = own_run
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "user_classes=[os.path.join]"], tmp_path)
    with pytest.raises(ConfigError, match=r"^user_classes: 'os\.path\.join' is a function"):
        evaluate(cfg)

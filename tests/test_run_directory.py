"""The run directory (``rnnlab.run.directory``): overwrite=true replaces only what an rnnlab run
wrote and never the command's own inputs, a directory in use is refused to a second command, and
a disk or file-system failure ends in one line with the run's status recorded."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from rnnlab.run.command import check
from rnnlab.run.directory import MARKER, claim_run_dir, release_run_dirs
from rnnlab.run.job import run_task
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError
from tests.conftest import FAST, compose_config
from tests.processes import python_process


@pytest.fixture(autouse=True)
def _released():
    yield
    release_run_dirs()


def earlier_run(run_dir: Path, marked: bool = True) -> Path:
    """A folder with what a finished run leaves (and, unmarked, what a user may keep)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (run_dir / "csv").mkdir()
    (run_dir / "metrics.json").write_text("{}")
    (run_dir / "train.log").write_text("log")
    (run_dir / "notes.txt").write_text("mine")
    if marked:
        (run_dir / MARKER).touch()
    return run_dir


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_overwrite_refuses_a_folder_rnnlab_did_not_write(tmp_path):
    folder = earlier_run(tmp_path / "mine", marked=False)
    before = names(folder)
    with pytest.raises(
        ConfigError, match=r"replaces only an rnnlab run's outputs.*no \.rnnlab-run"
    ):
        check("train", [f"hydra.run.dir={folder}", "overwrite=true"])
    assert names(folder) == before


def test_overwrite_replaces_an_earlier_runs_outputs_and_nothing_else(tmp_path):
    folder = earlier_run(tmp_path / "run")
    cfg = check("train", [f"hydra.run.dir={folder}", "overwrite=true"])
    assert (folder / "metrics.json").exists()  # checking deletes nothing; claiming does
    claim_run_dir(cfg, multirun=False)
    assert names(folder) == [MARKER, "notes.txt"]


def test_overwrite_never_deletes_the_commands_own_input(tmp_path):
    folder = earlier_run(tmp_path / "run")
    best = folder / "checkpoints" / "best.ckpt"
    argv = [f"ckpt_path={best}", f"hydra.run.dir={folder}", "overwrite=true"]
    with pytest.raises(ConfigError, match=r"would delete ckpt_path=.*best\.ckpt, an input of this"):
        check("eval", argv)
    assert best.read_bytes() == b"weights"


def test_predict_may_not_write_over_its_own_checkpoint(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    (tmp_path / "new.ts").write_text("x")
    argv = [f"ckpt_path={ckpt}", f"input={tmp_path / 'new.ts'}", f"output={ckpt}", "overwrite=true"]
    with pytest.raises(
        ConfigError, match=r"^output=.*model\.ckpt is this command's input ckpt_path"
    ):
        check("predict", [*argv, f"hydra.run.dir={tmp_path / 'run'}"])


def test_a_directory_held_by_one_command_is_refused_to_another(tmp_path):
    folder = tmp_path / "run"
    cfg = check("train", [f"hydra.run.dir={folder}"])
    claim_run_dir(cfg, multirun=False)
    assert names(folder) == [MARKER]
    with pytest.raises(ConfigError, match=r"is in use by another rnnlab process"):
        claim_run_dir(cfg, multirun=False)
    release_run_dirs()
    claim_run_dir(cfg, multirun=False)  # free again once the first has ended


def test_a_second_command_into_a_directory_in_use_ends_in_one_line(tmp_path):
    folder = tmp_path / "run"
    claim_run_dir(check("train", [f"hydra.run.dir={folder}"]), multirun=False)
    second = python_process(["-m", "rnnlab.train", f"hydra.run.dir={folder}"], tmp_path)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"error: the run directory {folder} is in use by another rnnlab process; choose another "
        "hydra.run.dir, or wait for that run to end"
    ]
    assert names(folder) == [MARKER]


def test_a_run_directory_name_too_long_ends_in_one_line(tmp_path):
    long_dir = tmp_path / ("a" * 50_000)
    with pytest.raises(ConfigError) as refused:
        check("train", [f"hydra.run.dir={long_dir}"])
    message = str(refused.value)
    assert "File name too long; shorten task_name, or set a shorter hydra.run.dir" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-5", "seed must be an integer from 0 to 4294967295, got -5"),
        (f"seed={2**80}", f"seed must be an integer from 0 to 4294967295, got {2**80}"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 trains nothing; set it to 1 or more"),
    ],
)
def test_seeds_and_lengths_that_cannot_train_are_refused(tmp_path, override, message):
    with pytest.raises(ConfigError, match=rf"^{message.replace('(', '.').replace(')', '.')}"):
        check("train", [override, f"hydra.run.dir={tmp_path / 'run'}"])


def test_a_full_disk_while_checkpointing_ends_in_one_line_and_a_status(
    tmp_path, monkeypatch, capsys
):
    def full_disk(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(torch, "save", full_disk)
    cfg = compose_config("train", [*FAST, "trainer.max_epochs=1"], tmp_path / "run")
    with pytest.raises(SystemExit) as stopped:
        run_task(train, cfg)
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot write ")
    assert line.endswith(": No space left on device; free space, or set hydra.run.dir to a "
                         "writable folder with a shorter path")  # fmt: skip
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status == {"status": "failed", "error": line.removeprefix("error: ")}


def test_running_out_of_memory_ends_in_one_line_and_leaves_no_run_directory(
    tmp_path, monkeypatch, capsys
):
    def too_big(cfg):
        raise MemoryError()

    monkeypatch.setattr("rnnlab.train.build_data_and_model", too_big)
    cfg = compose_config("train", FAST, tmp_path / "run")
    with pytest.raises(SystemExit) as stopped:
        run_task(train, cfg)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: out of memory: the data or the model does not fit; lower data.batch_size or "
        "model.encoder.hidden_size, or use a smaller data set"
    ]
    assert not (tmp_path / "run").exists()

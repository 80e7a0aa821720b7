"""The commands as a user runs them: installed configs, clean failures, no half-filled run dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnlab.run.command import check
from rnnlab.train import train
from rnnlab.utils.errors import ConfigError, find_user_error
from tests.conftest import compose_config, write_ts

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 180):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Two cases in the default suite (a data set and a file setting); the rest, each a fresh process
# of some seconds, in the slow suite (security.md's bad-input lines are also checked in-process)
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.name=NoSuchSet", "error: unknown UCR/UEA data set 'NoSuchSet'"),
        pytest.param(
            "model.encoder.cell=transformer",
            "error: unknown cell 'transformer'; set model.encoder",
            marks=_SLOW,
        ),
        pytest.param(
            "model.encoder.pooling=first",
            "error: unknown pooling 'first'; set model.encoder",
            marks=_SLOW,
        ),
        pytest.param(
            "experiment=forecast data.horizon=0",
            "error: data.horizon must be >= 1, got 0",
            marks=_SLOW,
        ),
        pytest.param(
            "experiment=forecast data.target_columns=[ppm]",
            "error: source 'co2' has no column 'ppm'",
            marks=_SLOW,
        ),
        pytest.param(
            "experiment=forecast data.lookback=2300",
            "error: source 'co2' has 2284 time steps, fewer",
            marks=_SLOW,
        ),
        pytest.param(
            "experiment=adding data.length=1",
            "error: data.length must be >= 2 (the span to",
            marks=_SLOW,
        ),
        (
            "experiment=forecast data.file=sales.csv",
            "error: data.file and data.source=co2 are both set; to forecast your own CSV use "
            "experiment=forecast_csv data.file=<your.csv>, or add data.source=null",
        ),
    ],
)
def test_bad_value_fails_with_one_line_and_leaves_no_run_dir(tmp_path, override, message):
    run_dir = tmp_path / "run"
    result = _run(["-m", "rnnlab.train", *override.split(), f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # exactly one line
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr + result.stdout
    assert not run_dir.exists()


def test_nan_in_user_file_names_file_and_sample(tmp_path):
    rows = ["1,2,3:a", "2,3,4,5:a", "3,2,1:a", "1,1:b", "5,4,3:b", "2,inf,2:b"]
    write_ts(tmp_path / "train.ts", rows)
    write_ts(tmp_path / "test.ts", ["1,2:a", "2,1:b"])
    result = _run(
        [
            "-m",
            "rnnlab.train",
            "data.train_file=train.ts",
            "data.test_file=test.ts",
            "data.val_fraction=0.34",
            "hydra.run.dir=run",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert "train.ts sample 5 has NaN/inf at time step 1, channel 0" in result.stderr
    assert not (tmp_path / "run").exists()


def test_installed_wheel_finds_its_configs(tmp_path):
    """A plain (non-editable) install must carry conf/ inside the package."""
    dist, target = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    wheel = next(dist.glob("rnnlab-*.whl"))
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    # PYTHONPATH puts the installed copy ahead of the checkout's editable one.
    env = {"PYTHONPATH": str(target)}
    where = _run(
        [
            "-c",
            "import rnnlab.utils.config as c, rnnlab; print(rnnlab.__file__); "
            "print(c.config_dir())",
        ],
        tmp_path,
        env,
    )
    package_file, conf = where.stdout.split()
    assert package_file.startswith(str(target)) and conf == str(target / "rnnlab" / "conf")
    job = _run(["-m", "rnnlab.train", "--cfg", "job", "experiment=gru"], tmp_path, env)
    assert job.returncode == 0, job.stderr
    assert "cell: gru" in job.stdout
    # the console script the wheel declares runs the same entry point
    script = _run(
        [str(target / "bin" / "rnnlab-eval"), "--cfg", "job", "ckpt_path=x"], tmp_path, env
    )
    assert script.returncode == 0, script.stderr
    assert "ckpt_path: x" in script.stdout


def test_seconds_since_process_start_counts_from_process_start(tmp_path):
    code = (
        "import time; time.sleep(0.6); "
        "from rnnlab.callbacks.run_state import seconds_since_process_start as s; print(s())"
    )
    started = time.monotonic()
    elapsed = float(_run(["-c", code], tmp_path).stdout)
    # at least the child's own sleep, at most the child's whole life as seen from here (no
    # fixed bound: imports on a loaded machine take what they take)
    assert 0.6 <= elapsed <= time.monotonic() - started


def test_overwrite_refuses_a_user_directory_and_touches_nothing(tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("keep")
    result = _run(["-m", "rnnlab.train", f"hydra.run.dir={own}", "overwrite=true"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: overwrite=true replaces only an rnnlab run's outputs, and {own} is not one "
        "(it has no .rnnlab-run); choose another hydra.run.dir"
    )
    assert [p.name for p in own.iterdir()] == ["notes.txt"]


def test_failed_run_in_a_used_run_directory_removes_only_what_it_wrote(tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    (own / ".rnnlab-run").touch()  # an earlier rnnlab run's directory, where the user keeps notes
    (own / "notes.txt").write_text("keep")
    (own / "mine.log").write_text("keep")
    result = _run(
        ["-m", "rnnlab.train", "data.name=NoSuchSet", f"hydra.run.dir={own}", "overwrite=true"],
        tmp_path,
    )
    assert result.returncode == 2 and "unknown UCR/UEA data set" in result.stderr
    assert sorted(p.name for p in own.iterdir()) == ["mine.log", "notes.txt"]
    assert (own / "notes.txt").read_text() == (own / "mine.log").read_text() == "keep"


def _earlier_run(run_dir: Path) -> None:
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"earlier weights")
    (run_dir / "metrics.json").write_text('{"test/acc": 0.5}')
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / ".rnnlab-run").touch()  # every rnnlab run directory carries it


def test_existing_run_directory_is_refused_then_replaced_only_when_asked(tmp_path):
    run_dir = tmp_path / "run"
    _earlier_run(run_dir)
    args = ["-m", "rnnlab.train", "trainer.max_epochs=1", "model.encoder.hidden_size=8"]
    refused = _run([*args, f"hydra.run.dir={run_dir}"], tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: the run directory {run_dir} already holds files; choose another hydra.run.dir, "
        f"continue it with ckpt_path={run_dir}/checkpoints/last.ckpt, or pass overwrite=true "
        "to replace an earlier run's outputs there"
    )
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"earlier weights"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".rnnlab-run",
        "checkpoints",
        "metrics.json",
        "notes.txt",
    ]

    replaced = _run([*args, f"hydra.run.dir={run_dir}", "overwrite=true", "logger=none"], tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() != b"earlier weights"


def test_sweep_into_a_used_sweep_directory_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    result = _run(["-m", "rnnlab.train", "-m", "seed=1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: the run directory {sweep} already holds files")
    assert [p.name for p in sweep.iterdir()] == ["0"]


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ("model.cell=gru", "(did you mean model.encoder.cell?)"),
        ("model.encoder.hiden_size=8", "(did you mean model.encoder.hidden_size?)"),
        ("data.nmae=x", "(did you mean data.name?)"),
        ("trainer=gpux", "(did you mean gpu?)"),
        ("experiment=forcast", "(did you mean forecast?)"),
    ],
)
def test_unknown_key_or_option_suggests_the_closest(override, hint):
    with pytest.raises(ConfigError) as refused:
        check("train", [override])
    assert hint in str(refused.value) and "\n" not in str(refused.value)


def test_baseline_the_data_does_not_provide_is_refused_when_the_run_is_built(tmp_path):
    cfg = compose_config(
        "train", ["experiment=forecast", "model.baselines=[naive,seasonal]"], tmp_path
    )
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert str(refused.value) == (
        "model.baselines has 'seasonal' (did you mean 'seasonal_naive'?), which this data does "
        "not provide; it provides: naive, seasonal_naive"
    )
    cfg = compose_config("train", ["experiment=covid3month", "model.metrics=[rmse,mase]"], tmp_path)
    with pytest.raises(ConfigError, match=r"model\.metrics has 'mase', which needs a scale"):
        train(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "experiment=copy model.encoder.nonlinearity=relu",
            "model.encoder.nonlinearity=relu applies to cell=rnn only",
        ),
        (
            "experiment=adding model.encoder.cell=gru model.encoder.init=irnn",
            "model.encoder.init=irnn (identity recurrent weights) is for cell=rnn only",
        ),
    ],
)
def test_vanilla_rnn_knobs_on_a_gated_cell_fail_as_user_errors(tmp_path, override, message):
    """Raised while the run is built, as a user error: the command prints it as one line and
    exits 2 (the mechanism the subprocess cases above test)."""
    cfg = compose_config("train", [*override.split(), "data.train_size=10"], tmp_path)
    with pytest.raises(Exception) as info:
        train(cfg)
    error = find_user_error(info.value)
    assert error is not None and str(error).startswith(message)
    assert "\n" not in str(error)


def test_unknown_optimiser_is_refused_before_the_run_with_the_options():
    with pytest.raises(ConfigError) as info:
        check("train", ["model/optimizer=adagard"])
    assert str(info.value) == (
        "In 'model/classifier': Could not find 'model/optimizer/adagard'; Available options in "
        "'model/optimizer': adam, adamw, ntasgd, sgd"
    )

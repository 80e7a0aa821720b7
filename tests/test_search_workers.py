"""Optuna searches that train, run as a user runs them (``python -m rnnlab.train
hparams_search=optuna ...`` in subprocesses): two workers sharing one study in SQLite, in an
Optuna journal file and in a real PostgreSQL server (started here on a free localhost port,
stopped by its PID however the test ends, skipped with its reason where PostgreSQL is not
installed) run every trial exactly once; a worker killed mid-search is continued with its
finished trials kept; a seeded toy search's pruner cuts the trials whose learning rate is
absurd; trials launched together as SLURM jobs (a one-node cluster on localhost,
scripts/slurm_cluster.py; hydra/launcher=local, its twin on submitit's local executor, where
SLURM is not installed) report to one study."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from rnnlab.search.storage import open_storage, storage_url

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)

# One setting searched (the learning rate), the others fixed; a short, complete run per trial.
SEARCH = [
    "hparams_search=optuna",
    "model.optimizer.lr=tag(log, interval(0.001, 0.01))",
    "model.encoder.cell=gru",
    "model.encoder.hidden_size=16",
    "model.encoder.num_layers=1",
    "model.optimizer.weight_decay=0",
    "model.head_dropout=0",
    "debug=limit",
    "trainer.max_epochs=2",
    "logger=none",
    "test=false",
    "trainer.enable_progress_bar=false",
    "hydra.sweeper.study_name=shared",
]
TIMEOUT_S = 900  # stops a hang only: a worker takes well under a minute


def _worker(cwd: Path, args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RNNLAB_LOG_DIR": str(cwd / "logs")}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "rnnlab.train", *SEARCH, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a kill reaches its jobs too
    )


def _finish(worker: subprocess.Popen[str]) -> str:
    output, _ = worker.communicate(timeout=TIMEOUT_S)
    assert worker.returncode == 0, output[-4000:]
    return output


def _study(storage: str, cwd: Path) -> optuna.Study:
    url = storage_url(storage, ".", cwd)
    return optuna.load_study(study_name="shared", storage=open_storage(url))


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())


def _trial_id(job: Path) -> int:
    return int(
        yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["sweeper"]["trial_id"]
    )


def _status(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


# --- a PostgreSQL server of the test's own --------------------------------------------------
def _postgres_bin() -> Path | None:
    for folder in [*os.environ.get("PATH", "").split(os.pathsep),
                   *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:  # fmt: skip
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a free localhost port, as its URL. It will
    not run as root: under root it runs as the system's postgres user."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            shutil.rmtree(folder)
            pytest.skip("PostgreSQL refuses to run as root and there is no postgres user")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    pid: int | None = None
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "--no-sync"], check=True, capture_output=True,
                       timeout=300)  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "start", "-w", "-D", str(data),
                        "-l", str(folder / "server.log"), "-o", options], check=True,
                       capture_output=True, timeout=300)  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if pid is not None:  # exactly the server started here: fast shutdown, then a kill
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
                for _ in range(600):
                    time.sleep(0.1)
                    os.kill(pid, 0)  # raises once the server is gone
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


# --- two workers on one study ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_two_workers_on_one_study_run_every_trial_exactly_once(kind, tmp_path, request):
    storage = {"sqlite": "sqlite:///optuna.db", "journal": "optuna.journal"}.get(kind)
    if kind == "postgresql":
        storage = request.getfixturevalue("postgres")
    assert storage is not None
    workers = [
        _worker(tmp_path, [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir=w{i}",
                           "hydra.sweeper.n_trials=2", f"hydra.sweeper.sampler.seed={i}"])
        for i in range(2)
    ]  # fmt: skip
    for worker in workers:
        _finish(worker)
    study = _study(storage, tmp_path)
    jobs = [job for i in range(2) for job in _jobs(tmp_path / f"w{i}")]
    assert len(jobs) == 2 + 2  # each worker ran its own n_trials
    assert len(study.trials) == len(jobs)  # the study's count is the sum of the workers'
    assert [t.number for t in study.trials] == list(range(len(jobs)))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    # every trial ran exactly once: one job each, and each job reported to its own trial
    assert sorted(t.user_attrs["run_dir"] for t in study.trials) == sorted(map(str, jobs))
    assert sorted(_trial_id(job) for job in jobs) == sorted(t._trial_id for t in study.trials)
    for trial in study.trials:
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["val/loss_best"])
        assert len(trial.intermediate_values) == 2  # val/loss after each of the two epochs


def test_a_killed_search_continues_with_its_finished_trials_kept(tmp_path):
    storage = "sqlite:///optuna.db"
    settings = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.heartbeat_s=1"]
    worker = _worker(tmp_path, [*settings, "hydra.sweep.dir=first", "hydra.sweeper.n_trials=4"])

    def lost_one() -> bool:  # one trial finished, the next one has reported an epoch
        with contextlib.suppress(Exception):  # the study may not exist yet, or be locked
            trials = _study(storage, tmp_path).trials
            running = [t for t in trials if t.state == TrialState.RUNNING]
            return trials[0].state == TrialState.COMPLETE and bool(running[0].intermediate_values)
        return False

    try:
        for _ in range(TIMEOUT_S * 10):  # until a trial is lost (its heartbeat is on record)
            time.sleep(0.1)
            assert worker.poll() is None, "the search ended before it could be killed"
            if not (tmp_path / "optuna.db").is_file() or not lost_one():
                continue
            # Seen once; confirmed with the worker frozen, so the kill lands on the state read
            # (the running trial cannot finish between the read and the kill).
            os.killpg(worker.pid, signal.SIGSTOP)
            _, status = os.waitpid(worker.pid, os.WUNTRACED)  # returns once it has stopped
            assert os.WIFSTOPPED(status), "the search ended before it could be killed"
            if lost_one():
                break
            os.killpg(worker.pid, signal.SIGCONT)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # no chance to tidy up
        worker.communicate(timeout=TIMEOUT_S)
    before = _study(storage, tmp_path).trials
    finished = {t.number: (t.params, t.value) for t in before if t.state == TrialState.COMPLETE}
    lost = [t.number for t in before if t.state == TrialState.RUNNING]
    assert finished and lost
    time.sleep(3 * 1 + 1)  # three heartbeat intervals of silence: the lost trial is stale
    _finish(_worker(tmp_path, [*settings, "hydra.sweep.dir=second", "hydra.sweeper.n_trials=2"]))
    after = _study(storage, tmp_path).trials
    assert {t.number: (t.params, t.value) for t in after if t.number in finished} == finished
    assert [after[n].state for n in lost] == [TrialState.FAIL] * len(lost)
    new = after[len(before) :]
    assert len(new) == 2 and all(t.state == TrialState.COMPLETE for t in new)


# --- pruning ---------------------------------------------------------------------------------
def test_the_pruner_cuts_the_trials_whose_learning_rate_is_absurd(tmp_path):
    # seed 90's draws: 0.0058 and 0.0061 (the median's first two trials), then 84.6 and 33.3
    # (absurd: the loss explodes at once), then 0.0085 and 0.0218
    output = _finish(_worker(tmp_path, [
        "model.optimizer.lr=tag(log, interval(0.001, 100))", "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=90", "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=2", "trainer.max_epochs=4",
        "hydra.sweeper.n_trials=6", "hydra.sweep.dir=toy",
    ]))  # fmt: skip
    study = _study(str(tmp_path / "toy" / "optuna.journal"), tmp_path)
    lrs = [t.params["model.optimizer.lr"] for t in study.trials]
    assert [round(lr, 4) for lr in lrs] == [0.0058, 0.0061, 84.6166, 33.3034, 0.0085, 0.0218]
    states = [t.state for t in study.trials]
    assert states == [TrialState.PRUNED if lr > 10 else TrialState.COMPLETE for lr in lrs]
    jobs = _jobs(tmp_path / "toy")
    for trial, job in zip(study.trials, jobs, strict=True):
        if trial.state == TrialState.PRUNED:  # stopped after its first epoch, not failed
            assert list(trial.intermediate_values) == [1]
            assert _status(job)["status"] == "pruned"
            assert _status(job)["error"].startswith("after epoch 1: val/loss ")
            assert not (job / "metrics.json").exists()
        else:
            assert len(trial.intermediate_values) == 4 and _status(job)["status"] == "completed"
    assert "trial 2 pruned after epoch 1" in output
    summary = subprocess.run(
        [sys.executable, "-m", "rnnlab.summary", "toy"],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S, check=True,
    )  # fmt: skip
    assert summary.stdout.count("| pruned: after epoch 1: val/loss") == 2
    assert "study shared: 6 trial(s), 4 complete, 2 pruned" in summary.stdout


# --- parallel trials as cluster jobs --------------------------------------------------------
@pytest.fixture
def launcher() -> Iterator[str]:
    """``slurm`` with a one-node SLURM on localhost (scripts/slurm_cluster.py) where Debian's
    SLURM packages are installed; else ``local``, its twin on submitit's local executor."""
    scripts = str(Path(__file__).resolve().parents[1] / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import slurm_cluster  # type: ignore[import-not-found]

    if slurm_cluster.unavailable_reason() is not None:
        yield "local"
        return
    with slurm_cluster.LocalSlurm() as cluster, pytest.MonkeyPatch.context() as patch:
        for key, value in cluster.env.items():  # SLURM_CONF, for sbatch and the jobs
            patch.setenv(key, value)
        yield "slurm"


def test_trials_launched_as_parallel_cluster_jobs_report_to_one_study(tmp_path, launcher):
    storage = str(tmp_path / "shared.journal")  # a file system every node sees
    parallel = [f"hydra/launcher={launcher}", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2"]
    _finish(_worker(tmp_path, [*parallel, f"hydra.sweeper.storage={storage}",
                               "hydra.sweep.dir=parallel"]))  # fmt: skip
    study = _study(storage, tmp_path)
    jobs = _jobs(tmp_path / "parallel")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert sorted(t.user_attrs["run_dir"] for t in study.trials) == sorted(map(str, jobs))
    assert all(len(t.intermediate_values) == 2 for t in study.trials)  # reported from its job
    submitted = {p.name for p in (tmp_path / "parallel" / ".submitit").iterdir()}
    if launcher == "slurm":  # both trials asked for at once: one job array of two tasks
        tasks = [name.split("_") for name in submitted if re.fullmatch(r"\d+_\d+", name)]
        assert len({array for array, _ in tasks}) == 1 and sorted(t for _, t in tasks) == ["0", "1"]
    else:
        assert len(submitted) == 2  # a process per trial

"""Cluster jobs against a real SLURM: a one-node cluster on localhost (scripts/slurm_cluster.py)
runs ``hydra/launcher=slurm`` sweeps as a user's cluster would, with ``sbatch`` job arrays,
``srun`` tasks, requeues and time limits. Each test checks what SLURM itself reports
(``scontrol show job``: ids, states, restarts, times) besides the runs' own files.

The tests skip, saying why, where Debian's ``slurmctld slurmd slurm-client munge`` are not
installed or the daemons cannot run as root."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rnnlab.slurm import show_job
from rnnlab.summary import summarise

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["debug=limit", "trainer.enable_progress_bar=false", "model.encoder.hidden_size=16"]
# Bounds that only stop a hang: each is ten times or more what the step takes on an idle machine.
SWEEP_HANG_S = 600
WAIT_HANG_S = 300


def _cluster_script() -> ModuleType:
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("slurm_cluster")


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A one-node SLURM for this module's tests; its ``SLURM_CONF`` is in the environment the
    tests, their sweeps and (through sbatch) the jobs see."""
    script = _cluster_script()
    reason = script.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    local = script.LocalSlurm()
    with pytest.MonkeyPatch.context() as patch:
        local.start()
        try:
            for key, value in local.env.items():
                patch.setenv(key, value)
            yield local
        finally:
            local.stop()


# The sweep commands a test started; whatever a test leaves running is stopped after it.
_drivers: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _stop_leftover_sweeps() -> Iterator[None]:
    yield
    while _drivers:
        driver = _drivers.pop()
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def _sweep(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m rnnlab.train -m hydra/launcher=slurm ARGS`` from ``cwd`` (its output in
    ``cwd/driver.log``); it returns when every job of the sweep has ended."""
    env = {**os.environ, "RNNLAB_LOG_DIR": str(cwd / "logs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    with (cwd / "driver.log").open("wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "rnnlab.train", "-m", "hydra/launcher=slurm", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _drivers.append(driver)
    return driver


def _finish(driver: subprocess.Popen[bytes], cwd: Path) -> str:
    """Wait for the sweep's command; its output. It must succeed."""
    try:
        driver.wait(timeout=SWEEP_HANG_S)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = (cwd / "driver.log").read_text()
    assert driver.returncode == 0, output[-3000:]
    return output


def _wait_for(ready: Callable[[], bool], what: str, driver: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_HANG_S
    while not ready():
        assert driver.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {WAIT_HANG_S} s"
        time.sleep(0.1)


def _ended(job: str) -> dict[str, str]:
    """``scontrol show job`` of ``job`` once SLURM has it ended (a job's process may still be
    exiting when the sweep's command has its result)."""
    deadline = time.monotonic() + WAIT_HANG_S
    while (shown := show_job(job)).get("JobState") in ("PENDING", "RUNNING", "COMPLETING"):
        assert time.monotonic() < deadline, f"job {job} still {shown['JobState']}"
        time.sleep(0.1)
    return shown


def _jobs(sweep: Path) -> list[str]:
    """The SLURM jobs of a sweep as submitit recorded them (``<array>_<task>``, or the job's id
    alone for a one-job sweep), in job order."""
    found = [p.parent.name for p in (sweep / ".submitit").glob("*/*_submitted.pkl")]
    return sorted(found, key=lambda job: [int(part) for part in job.split("_")])


def _job_log(sweep: Path, job: str, task: int = 0, stream: str = "err") -> str:
    return (sweep / ".submitit" / job / f"{job}_{task}_log.{stream}").read_text()


def _job_processes(job: str) -> list[int]:
    """The PIDs of a running job's Python processes (its srun tasks, not srun itself), as SLURM
    lists them."""
    listed = subprocess.run(
        ["scontrol", "listpids", show_job(job)["JobId"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # PID JOBID STEPID LOCALID GLOBALID: the tasks are in step 0, srun in the batch step
    rows = [line.split() for line in listed.splitlines()[1:]]
    pids = [int(row[0]) for row in rows if len(row) >= 3 and row[2] != "batch"]
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"submitit.core._submit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    assert found, f"no Python process of job {job} among {pids}"
    return found


def _scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, timeout=60)


def _when(job: dict[str, str], key: str) -> datetime:
    return datetime.fromisoformat(job[key])


def _requeued_line(job: str, last: Path) -> str:
    """What an interrupted job that SLURM requeued is told."""
    return f"SLURM requeued job {job}: it runs again by itself and resumes from {last}"


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return state["state_dict"]


def test_sweep_is_one_job_array_throttled_and_a_failing_point_fails_alone(cluster, tmp_path):
    # the default trainer and the launcher's default resources, as a new user on a CPU
    # partition would run it; the second point's cell does not exist
    sweep = tmp_path / "sweep"
    args = ["model.encoder.cell=lstm,transformer", *QUICK, f"hydra.sweep.dir={sweep}"]
    output = _finish(_sweep([*args, "hydra.launcher.array_parallelism=1"], tmp_path), tmp_path)
    assert "sacct" not in output  # no accounting on this cluster, and no warnings about it

    jobs = _jobs(sweep)
    assert len(jobs) == 2
    assert len({job.split("_")[0] for job in jobs}) == 1, jobs  # one array
    shown = [_ended(job) for job in jobs]
    for job, fields in zip(jobs, shown, strict=True):
        assert fields["JobState"] == "COMPLETED", (job, fields)
        assert fields["ArrayTaskThrottle"] == "1", fields
        assert (fields["NumCPUs"], fields["NumNodes"], fields["NumTasks"]) == ("1", "1", "1")
        assert fields["TRES"].startswith("cpu=1,mem=4G"), fields  # cpus_per_task 1, mem_gb 4
        assert "gres/gpu" not in fields["TRES"]
    # never two at once: each task started after the one before had ended
    spans = sorted((_when(f, "StartTime"), _when(f, "EndTime")) for f in shown)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans

    statuses = [json.loads((sweep / str(n) / "status.json").read_text()) for n in range(2)]
    assert [s["status"] for s in statuses] == ["completed", "failed"]
    assert "unknown cell 'transformer'" in statuses[1]["error"]
    table = summarise(sweep)
    assert list(table["status"].str.split(":").str[0]) == ["completed", "failed"]
    assert table["val/loss_best"].notna().tolist() == [True, False]
    # the job's threads are the one CPU SLURM gave the task, whatever the submitter had
    assert (
        "OMP_NUM_THREADS=1: the CPUs SLURM gave this task"
        in (sweep / "0" / "train.log").read_text()
    )


def test_preempted_job_is_requeued_and_ends_as_the_uninterrupted_one(cluster, tmp_path):
    # two jobs of the same configuration side by side; the first one is requeued while it
    # trains, as a preemption with PreemptMode=REQUEUE does
    sweep = tmp_path / "sweep"
    epochs = 40
    args = ["seed=3,3", *QUICK, f"trainer.max_epochs={epochs}", f"hydra.sweep.dir={sweep}"]
    driver = _sweep(args, tmp_path)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    _wait_for(last.is_file, "first epoch's last.ckpt", driver)
    job = _jobs(sweep)[0]
    # held still until SLURM's requeue continues it (SIGCONT) and stops it (SIGTERM), so that it
    # is stopped in the middle of its training whatever the machine's speed
    for pid in _job_processes(job):
        os.kill(pid, signal.SIGSTOP)
    _scontrol("requeue", job)
    _finish(driver, tmp_path)

    first, second = (_ended(j) for j in _jobs(sweep))
    assert (first["JobState"], first["Restarts"]) == ("COMPLETED", "1"), first
    assert (second["JobState"], second["Restarts"]) == ("COMPLETED", "0"), second
    # the interruption says what happens: SLURM runs it again, and it resumes by itself
    stopped = re.search(r"SIGTERM at epoch (\d+), step \d+; (.*)", _job_log(sweep, job))
    assert stopped is not None, _job_log(sweep, job)[-3000:]
    assert int(stopped.group(1)) < epochs
    assert stopped.group(2) == _requeued_line(job, last)
    assert f"resuming from {last}" in (sweep / "0" / "train.log").read_text()
    # and ends where the uninterrupted job ends: same weights, same metrics
    resumed, uninterrupted = _weights(sweep / "0"), _weights(sweep / "1")
    assert resumed.keys() == uninterrupted.keys()
    for name, weight in resumed.items():
        assert torch.equal(weight, uninterrupted[name]), name
    one, two = (json.loads((sweep / n / "metrics.json").read_text()) for n in ("0", "1"))
    for key in ("val/loss_best", "test/loss", "test/acc", "epochs"):
        assert one[key] == pytest.approx(two[key], abs=1e-6), key
    assert [json.loads((sweep / n / "status.json").read_text())["status"] for n in "01"] == [
        "completed",
        "completed",
    ]


def test_job_near_its_time_limit_is_requeued_by_submitit_resumes_and_completes(cluster, tmp_path):
    # --signal=USR2@60: SLURM signals the job once a minute (and at most 30 s more: it looks at
    # time limits every 30 s) is left before its time limit; submitit requeues it, once at most
    # (max_num_timeout=1). The job starts with 10 minutes; once its first epoch is saved it is
    # held still and its limit cut to two minutes from now, so the signal finds it in the
    # middle of its training however fast the machine is.
    sweep = tmp_path / "sweep"
    epochs = 40
    args = [
        "seed=4",
        *QUICK,
        f"trainer.max_epochs={epochs}",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.signal_delay_s=60",
        "hydra.launcher.max_num_timeout=1",
        f"hydra.sweep.dir={sweep}",
    ]
    driver = _sweep(args, tmp_path)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    _wait_for(last.is_file, "first epoch's last.ckpt", driver)
    (job,) = _jobs(sweep)
    processes = _job_processes(job)
    for pid in processes:
        os.kill(pid, signal.SIGSTOP)
    try:
        minutes, _ = map(int, show_job(job)["RunTime"].split(":")[-2:])
        _scontrol("update", f"JobId={job}", f"TimeLimit={minutes + 2}")
        # SLURM continues the job (SIGCONT) and signals it; submitit requeues it
        _wait_for(lambda: show_job(job)["Restarts"] == "1", "requeue", driver)
    finally:
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    _scontrol("update", f"JobId={job}", "TimeLimit=10")  # the next run has its time again
    _finish(driver, tmp_path)

    shown = _ended(job)
    assert (shown["JobState"], shown["Restarts"]) == ("COMPLETED", "1"), shown
    err = _job_log(sweep, job)
    assert "Caught signal SIGUSR2" in err and "this job is timed-out" in err, err[-3000:]
    assert f"Requeued job {job} (0 remaining timeouts)" in _job_log(sweep, job, stream="out")
    # stopped by the time-limit signal itself, or by the SIGTERM of submitit's requeue (which
    # comes while submitit's handler exits, and may be the one Lightning stops at)
    stopped = re.search(r"SIG(?:USR2|TERM) at epoch (\d+), step \d+; (.*)", err)
    assert stopped is not None, err[-3000:]
    assert int(stopped.group(1)) < epochs
    assert stopped.group(2) == _requeued_line(job, last)
    assert f"resuming from {last}" in (sweep / "0" / "train.log").read_text()
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["epochs"] == epochs
    assert json.loads((sweep / "0" / "status.json").read_text())["status"] == "completed"


FULL_BATCH = [
    # One full batch per step: 1 process x 216 sequences and 2 processes x 108 compute the same
    # mean gradient, so both runs must end with the same weights and metrics.
    "debug=limit",
    "trainer.limit_train_batches=1.0",
    "trainer.limit_val_batches=1.0",
    "trainer.limit_test_batches=1.0",
    "trainer.max_epochs=4",
    "model.head_dropout=0",
    "model.encoder.hidden_size=16",
    "trainer.enable_progress_bar=false",
]


def test_ddp_through_srun_matches_one_process(cluster, tmp_path):
    # one job, two srun tasks; Lightning takes the ranks from SLURM's environment and starts no
    # processes of its own. The one-process run with the same global batch runs meanwhile here.
    sweep = tmp_path / "sweep"
    args = [*FULL_BATCH, "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=108"]
    driver = _sweep([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    one_process = [*FULL_BATCH, "data.batch_size=216", f"hydra.run.dir={tmp_path / 'one'}"]
    single = subprocess.run(
        [sys.executable, "-m", "rnnlab.train", *one_process],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=SWEEP_HANG_S,
        check=False,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    _finish(driver, tmp_path)

    (job,) = _jobs(sweep)
    shown = _ended(job)
    assert shown["JobState"] == "COMPLETED", shown
    assert (shown["NumNodes"], shown["NumTasks"], shown["CPUs/Task"]) == ("1", "2", "1")
    for rank in (0, 1):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in _job_log(sweep, job, rank)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((sweep / "0" / "metrics.json").read_text())
    for key in ("test/acc", "test/f1", "test/loss", "val/loss_best", "val/acc"):
        assert two[key] == pytest.approx(one[key], abs=1e-5), key

"""The ``threads`` setting: the CPUs a process may use (affinity, cgroup v2 and v1 quotas, SLURM,
OMP_NUM_THREADS), its refusals, and every command's job giving torch that many threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rnnlab.run.job import run_task
from rnnlab.utils import threads
from rnnlab.utils.errors import ConfigError
from rnnlab.utils.threads import apply_threads, cgroup_cpus, resolve_threads, usable_cpus


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def eight_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


def _usable(tmp_path: Path, proc: str = "0::/\n", **environ: str) -> int:
    _write(tmp_path / "proc-cgroup", proc)
    return usable_cpus(environ, tmp_path / "cg", tmp_path / "proc-cgroup")


def test_without_limits_every_cpu_of_the_affinity_counts(tmp_path, eight_cpus):
    _write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    assert _usable(tmp_path) == 8


def test_affinity_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert _usable(tmp_path) == 3


def test_a_cgroup_v2_quota_counts_whole_cpus_at_least_one(tmp_path, eight_cpus):
    _write(tmp_path / "cg" / "cpu.max", "250000 100000\n")
    assert _usable(tmp_path) == 2
    _write(tmp_path / "cg" / "cpu.max", "50000 100000\n")
    assert _usable(tmp_path) == 1


def test_the_tightest_v2_quota_of_the_process_cgroup_and_those_above_it_binds(tmp_path, eight_cpus):
    _write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    _write(tmp_path / "cg" / "jobs" / "cpu.max", "300000 100000\n")
    _write(tmp_path / "cg" / "jobs" / "mine" / "cpu.max", "max 100000\n")
    assert _usable(tmp_path, "0::/jobs/mine\n") == 3
    assert cgroup_cpus(tmp_path / "cg", tmp_path / "proc-cgroup") == 3.0


def test_a_cgroup_v1_quota_counts(tmp_path, eight_cpus):
    proc = "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n"
    _write(tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "400000\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert _usable(tmp_path, proc) == 4


@pytest.mark.parametrize("text", ["", "garbage", "0 100000", "100000 0", "max"])
def test_an_unreadable_or_odd_quota_is_no_limit(tmp_path, eight_cpus, text):
    _write(tmp_path / "cg" / "cpu.max", text)
    assert _usable(tmp_path) == 8


def test_slurm_and_omp_num_threads_limit(tmp_path, eight_cpus):
    assert _usable(tmp_path, SLURM_CPUS_PER_TASK="4") == 4
    assert _usable(tmp_path, SLURM_CPUS_PER_TASK="4", OMP_NUM_THREADS="2") == 2
    assert _usable(tmp_path, SLURM_CPUS_PER_TASK="16") == 8  # never more than the affinity
    assert _usable(tmp_path, SLURM_CPUS_PER_TASK="", OMP_NUM_THREADS="x") == 8


def test_this_machine_reports_at_least_one_cpu():
    assert usable_cpus() >= 1
    assert resolve_threads(None) == resolve_threads("auto") == usable_cpus()


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "many"])
def test_a_thread_count_that_is_not_a_whole_number_from_1_is_refused(value):
    with pytest.raises(ConfigError, match=r"threads=.*whole number of threads >= 1"):
        resolve_threads(value)


def test_every_command_job_gives_torch_its_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        cfg = OmegaConf.create({"threads": 1, "paths": {"output_dir": "unused"}})
        assert run_task(lambda _: torch.get_num_threads(), cfg) == 1
        monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
        cfg.threads = None
        assert run_task(lambda _: torch.get_num_threads(), cfg) == 2
        assert apply_threads(3) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_bad_thread_count_ends_the_command_in_one_line(capsys, tmp_path):
    cfg = OmegaConf.create({"threads": 0, "paths": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(SystemExit) as exited:
        run_task(lambda _: None, cfg)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: threads=0: give a whole number of threads >= 1, or null for the CPUs this "
        "process may use"
    ]


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_rnnlab_sets_a_sleeping_openmp_wait_policy_unless_the_user_chose(given, expected):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    # what OpenMP will read when torch loads it: the environment once rnnlab is imported
    shown = subprocess.run(
        [sys.executable, "-c", "import os, rnnlab; print(os.environ['OMP_WAIT_POLICY'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert shown.stdout.strip() == expected

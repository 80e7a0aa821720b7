"""``hydra/launcher=slurm`` sized from the trainer, and rnnlab.slurm's pieces that need no
cluster (tests/test_slurm.py runs the real one): the GPUs asked for, torch's threads, job
states read from squeue, and what an interrupted job is told."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from rnnlab import slurm
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError
from rnnlab.utils.threads import resolve_threads


def _launcher(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    return cfg.hydra


@pytest.mark.parametrize(
    ("overrides", "nodes", "gpus", "tasks"),
    [
        ([], 1, None, 1),  # the default trainer (accelerator auto): a CPU job
        (["trainer=cpu"], 1, None, 1),
        (["trainer=gpu"], 1, 1, 1),
        (["trainer=ddp_cpu"], 1, None, 2),  # two srun tasks, no GPU
        (["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"], 2, 4, 4),
    ],
)
def test_slurm_job_is_sized_from_the_trainer(overrides, nodes, gpus, tasks):
    hydra = _launcher(overrides)
    launcher = hydra.launcher
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (nodes, gpus, tasks)
    # defaults any partition accepts; SLURM's own default of one CPU per task
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.timeout_min) == (1, 4, 60)
    assert hydra.callbacks.slurm_jobs._target_ == "rnnlab.slurm.SlurmJobs"


def test_gpus_per_node_of_a_device_list_and_a_bad_count():
    assert slurm.gpus_per_node("gpu", [0, 1, 2]) == 3
    with pytest.raises(ConfigError, match=r"trainer\.devices=auto cannot size a SLURM job"):
        slurm.gpus_per_node("gpu", "auto")


def test_the_threads_are_the_cpus_slurm_gave_the_task(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # the submitting shell's, inherited
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert slurm.use_allocated_cpus() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"  # Lightning's DDP set-up keeps it
    assert resolve_threads(None) == 1  # the threads setting's default: torch's threads
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert slurm.use_allocated_cpus() is None  # outside a SLURM job: nothing changes
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_job_states_come_from_squeue_and_a_job_it_forgot_has_ended():
    watcher = slurm._queue_watcher(delay_s=60)
    for job in ("7_0", "7_1", "7_2", "8"):
        watcher.register_job(job)
    listed = watcher.read_info("7_0|COMPLETED|vm\n7_1|RUNNING|vm\n8|PENDING|\n")
    states = {job: info["State"] for job, info in listed.items()}
    assert states == {"7_0": "COMPLETED", "7_1": "RUNNING", "8": "PENDING", "7_2": slurm.ENDED}
    command = watcher._make_command()
    assert command[0] == "squeue" and "--array" in command and "--states=all" in command


def test_interrupted_job_is_told_what_slurm_does_with_it(monkeypatch, tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    resume = f"python -m rnnlab.train seed=1 ckpt_path={last}"
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert slurm.interruption_advice(last, resume) is None  # not a SLURM job

    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "15")
    monkeypatch.setattr(slurm, "launcher_overrides", lambda: ["hydra/launcher=slurm"])
    monkeypatch.setattr(slurm, "requeued", lambda job: job == "12_3")
    assert slurm.interruption_advice(last, resume) == (
        "SLURM requeued job 12_3: it runs again by itself and starts over (no epoch had finished)"
    )
    last.parent.mkdir(parents=True)
    last.touch()
    assert slurm.interruption_advice(last, resume) == (
        f"SLURM requeued job 12_3: it runs again by itself and resumes from {last}"
    )
    monkeypatch.setattr(slurm, "requeued", lambda job: False)  # cancelled
    continued = (
        f"continue it with: python -m rnnlab.train -m hydra/launcher=slurm seed=1 ckpt_path={last}"
    )
    assert slurm.interruption_advice(last, resume) == (
        f"SLURM will not run job 12_3 again; {continued}"
    )
    monkeypatch.setattr(slurm, "requeued", lambda job: None)  # SLURM does not answer
    assert slurm.interruption_advice(last, resume) == (
        "SLURM did not say whether job 12_3 was requeued: if it was, it runs again by itself "
        f"and resumes from {last}; if not, {continued}"
    )
    monkeypatch.setattr(slurm, "_submitit_requeued", True)  # submitit requeued it itself
    assert slurm.interruption_advice(last, resume).startswith("SLURM requeued job 12_3: ")


def test_restart_count_is_read_from_scontrol(monkeypatch):
    shown = "JobId=15 ArrayJobId=12 ArrayTaskId=3 JobState=RUNNING Requeue=1 Restarts=2 X=a=b"
    monkeypatch.setattr(slurm, "_ask", lambda *command: shown)
    assert slurm.show_job("12_3")["X"] == "a=b"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert slurm.requeued("12_3") is True  # 2 restarts now, this run started after the first
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert slurm.requeued("12_3") is False
    monkeypatch.setattr(slurm, "_ask", lambda *command: None)  # SLURM does not answer
    assert slurm.requeued("12_3") is None


def test_a_cluster_without_accounting_is_recognised(monkeypatch):
    config = "AccountingStorageType   = accounting_storage/none\nClusterName = x\n"
    monkeypatch.setattr(slurm, "_ask", lambda *command: config)
    assert not slurm.accounting_enabled()
    monkeypatch.setattr(slurm, "_ask", lambda *command: config.replace("none", "slurmdbd"))
    assert slurm.accounting_enabled()
    monkeypatch.setattr(slurm, "_ask", lambda *command: None)
    assert slurm.accounting_enabled()  # SLURM cannot say: keep submitit's sacct


def test_the_local_cluster_config_and_its_refusal(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import slurm_cluster

    conf = slurm_cluster.slurm_conf(tmp_path, 6817, 6818)
    for setting in (
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobRequeue=1",
        "AccountingStorageType=accounting_storage/none",
        "SlurmUser=root",
        f"StateSaveLocation={tmp_path}/state",
        "SlurmctldPort=6817",
        f"CPUs={slurm_cluster.machine_cpus()}",
    ):
        assert setting in conf
    monkeypatch.setattr(slurm_cluster, "_which", lambda name: None)
    assert slurm_cluster.unavailable_reason() == (
        "SLURM is not installed (no munged, slurmctld, slurmd, sbatch, srun, squeue, sinfo, "
        "scontrol, scancel); apt-get install slurmctld slurmd slurm-client munge"
    )


def _uncompleted(tmp_path: Path) -> Exception:
    from submitit.core.utils import UncompletedJobError

    # submitit's own wording (submitit/core/core.py, Job.results)
    result = tmp_path / ".submitit" / "17_1" / "17_1_0_result.pkl"
    return UncompletedJobError(
        f"Job 17_1 (task: 0) with path {result}\n"
        "has not produced any output (state: CANCELLED by 0)\n"
        "Error stream produced:\n----------------------------------------\nslurmstepd: CANCELLED"
    )


def test_a_cluster_job_that_ended_without_a_result_is_one_line(tmp_path):
    assert slurm.unfinished_job(_uncompleted(tmp_path)) == (
        "SLURM job 17_1 ended without a result (state: CANCELLED by 0); its output and error "
        f"streams are in {tmp_path / '.submitit' / '17_1'}"
    )
    assert slurm.unfinished_job(RuntimeError("Job 17_1 (task: 0) with path x")) is None


def test_the_submitting_command_ends_in_that_line_and_exit_status_1(tmp_path, monkeypatch, capsys):
    from rnnlab.run import command as run_command
    from rnnlab.train import job

    def cancelled(*args, **kwargs):
        raise _uncompleted(tmp_path)

    monkeypatch.setattr(run_command, "run", cancelled)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.chdir(tmp_path)
    argv = ["rnnlab.train", "-m", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exited:
        run_command.command("train", job)
    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {slurm.unfinished_job(_uncompleted(tmp_path))}"
    ]

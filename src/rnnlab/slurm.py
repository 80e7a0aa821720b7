"""SLURM jobs of a sweep (``hydra/launcher=slurm``): the GPUs a job asks for, the CPU threads each
of its processes uses, job states on a cluster without accounting, and what an interrupted job
is told.

submitit follows its jobs with ``sacct``, which reads SLURM's accounting database; a cluster
without one (common on small clusters) answers every call with an error, which submitit logs
as a warning, and the jobs' states stay unknown, so a job that dies without a result would be
waited for forever. On such a cluster the sweep reads ``squeue`` instead, which knows every job
the controller still remembers; a job it no longer lists has ended.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig

from rnnlab.utils.errors import ConfigError

log = logging.getLogger(__name__)

# squeue's field separator and columns: job id (array tasks as <job>_<task>), state, nodes.
_QUEUE_FORMAT = "%i|%T|%N"
# The state given to a job squeue no longer lists: it has ended (submitit then looks for its
# result, and says so when there is none).
ENDED = "ENDED"


def gpus_per_node(accelerator: Any, devices: Any) -> int | None:
    """The GPUs per node a job asks SLURM for (``--gpus-per-node``): ``trainer.devices`` for a
    GPU trainer, none for a CPU one (``auto`` included: it uses a GPU only where one is given).
    The config resolver ``slurm_gpus_per_node`` (registered in ``rnnlab.utils.config``)."""
    if str(accelerator) not in ("gpu", "cuda"):
        return None
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, list | tuple | ListConfig):
        return len(devices)
    raise ConfigError(
        f"trainer.devices={devices} cannot size a SLURM job; set trainer.devices to the number "
        "of GPUs per node (or hydra.launcher.gpus_per_node yourself)"
    )


def use_allocated_cpus() -> int | None:
    """In a SLURM job, make the CPUs SLURM gave each task (``SLURM_CPUS_PER_TASK``) the job's
    ``OMP_NUM_THREADS``, which both the ``threads`` setting (``rnnlab.utils.threads``, where
    torch gets its threads) and Lightning's DDP set-up read: without cgroups a task sees every
    core of the node, and a value the submitting shell had would otherwise win. Returns the
    number (None outside such a job)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if not cpus.isdigit() or int(cpus) < 1:
        return None
    os.environ["OMP_NUM_THREADS"] = cpus
    return int(cpus)


def slurm_job_id() -> str | None:
    """This process's SLURM job as ``scontrol`` names it (``<array job>_<task>`` for an array
    task), None outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _ask(*command: str) -> str | None:
    """A SLURM command's output; None when it fails or does not answer within a minute."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def show_job(job: str) -> dict[str, str]:
    """``scontrol show job``'s fields of ``job`` ({} when SLURM does not know it)."""
    shown = _ask("scontrol", "show", "job", "--oneliner", job)
    fields: dict[str, str] = {}
    for word in (shown or "").split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def requeued(job: str) -> bool | None:
    """Whether SLURM has requeued ``job`` since this run of it started (preemption,
    ``scontrol requeue``, submitit after a time limit): its restart count has grown past the
    ``SLURM_RESTART_COUNT`` this run was started with. None when SLURM cannot say."""
    restarts = show_job(job).get("Restarts", "")
    if not restarts.isdigit():
        return None
    return int(restarts) > int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def launcher_overrides() -> list[str]:
    """The command line's settings of the launcher (``hydra/launcher=slurm``,
    ``hydra.launcher.*``), as this job was given them."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [
        str(o)
        for o in HydraConfig.get().overrides.hydra
        if str(o).startswith(("hydra/launcher=", "hydra.launcher."))
    ]


def on_the_cluster(command: str) -> str:
    """``command`` (``python -m rnnlab.train ...``) as a one-job sweep sent to the cluster with
    this job's launcher settings."""
    words = shlex.split(command)
    at = words.index("rnnlab.train") + 1 if "rnnlab.train" in words else len(words)
    return shlex.join([*words[:at], "-m", *launcher_overrides(), *words[at:]])


def interruption_advice(last: Path, resume: str) -> str | None:
    """What becomes of a SLURM job stopped by a signal, for the interruption's one line (None
    outside SLURM). Requeued (preemption, ``scontrol requeue``, submitit before a time limit),
    it runs again by itself in its run directory and resumes from ``last``, the last finished
    epoch; otherwise (cancelled, out of requeues) ``resume`` (the command that continues it from
    ``last``) is given, sent to the cluster."""
    job = slurm_job_id()
    if job is None:
        return None
    if last.is_file():
        comes_back = f"it runs again by itself and resumes from {last}"
        continued = f"continue it with: {on_the_cluster(resume)}"
    else:
        comes_back = "it runs again by itself and starts over (no epoch had finished)"
        continued = "no epoch had finished: run it again"
    back = _submitit_requeued or requeued(job)
    if back:
        return f"SLURM requeued job {job}: {comes_back}"
    if back is None:
        unknown = f"SLURM did not say whether job {job} was requeued"
        return f"{unknown}: if it was, {comes_back}; if not, {continued}"
    return f"SLURM will not run job {job} again; {continued}"


# The signal that stopped this process, when it was one SLURM sends before a time limit
# (submitit's handler then requeues the job and exits, which Lightning reports as an interrupt),
# and whether submitit requeued the job then.
_time_limit_signals: list[int] = []
_submitit_requeued = False


def note_time_limit_signal() -> None:
    """Remember the time-limit signal (``SIGUSR2``) and whether submitit's handler requeued the
    job (it exits after requeueing, and raises when it will not), so that the interruption
    names the signal (``stop_signal``) and says what SLURM does next."""
    handler = signal.getsignal(signal.SIGUSR2)
    if not callable(handler):
        return

    def noted(signum: int, frame: FrameType | None) -> None:
        global _submitit_requeued
        _time_limit_signals.append(signum)
        try:
            handler(signum, frame)
        except SystemExit:
            _submitit_requeued = True
            raise

    signal.signal(signal.SIGUSR2, noted)


def stop_signal() -> signal.Signals | None:
    """The time-limit signal this job received, if it did."""
    return signal.Signals(_time_limit_signals[-1]) if _time_limit_signals else None


def accounting_enabled() -> bool:
    """Whether the cluster keeps accounting (``sacct`` works); assumed when SLURM cannot say."""
    config = _ask("scontrol", "show", "config") or ""
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip() not in ("accounting_storage/none", "(null)", "")
    return True


def _queue_watcher(delay_s: int) -> Any:
    """submitit's job-state watcher reading ``squeue`` instead of ``sacct``."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        def _make_command(self) -> list[str] | None:
            if not self._registered - self._finished:
                return None
            # the user's jobs, array tasks one per line, finished ones while remembered
            return ["squeue", "--me", "--noheader", "--array", "--states=all",
                    f"--format={_QUEUE_FORMAT}"]  # fmt: skip

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            listed: dict[str, dict[str, str]] = {}
            for line in text.splitlines():
                job, _, rest = line.strip().partition("|")
                state, _, nodes = rest.partition("|")
                if job and state:
                    listed[job] = {"JobID": job, "State": state, "NodeList": nodes}
            # a job the controller no longer lists has ended
            for job in self._registered - self._finished - listed.keys():
                listed[job] = {"JobID": job, "State": ENDED, "NodeList": ""}
            return listed

    return QueueWatcher(delay_s=delay_s)


def follow_jobs_without_accounting() -> bool:
    """On a cluster without accounting, make submitit read job states from ``squeue``. Returns
    whether it does."""
    if accounting_enabled():
        return False
    from submitit.slurm.slurm import SlurmJob

    SlurmJob.watcher = _queue_watcher(delay_s=SlurmJob.watcher._delay_s)
    log.debug("the cluster keeps no accounting: job states are read from squeue")
    return True


class SlurmJobs(Callback):
    """A Hydra callback that ``hydra/launcher=slurm`` adds: before the sweep is submitted, job
    states come from ``squeue`` where there is no accounting; in each job, the threads are the
    CPUs SLURM gave the task, and a time-limit signal is remembered for the interruption's line."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        follow_jobs_without_accounting()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        note_time_limit_signal()
        cpus = use_allocated_cpus()
        if cpus is not None:
            log.info("OMP_NUM_THREADS=%d: the CPUs SLURM gave this task", cpus)


# submitit's message when a job ended without a result: its first two lines
_UNCOMPLETED = re.compile(
    r"Job (?P<job>\S+) \(task: \d+\) with path (?P<path>.+)\n"
    r"has not produced any output \(state: (?P<state>[^\n]*)\)"
)


def unfinished_job(exc: BaseException) -> str | None:
    """One line for a cluster job that ended without a result (cancelled, killed, out of
    memory), which submitit raises as ``UncompletedJobError`` in the submitting command; None
    for any other exception."""
    if type(exc).__name__ != "UncompletedJobError":
        return None
    found = _UNCOMPLETED.search(str(exc))
    if found is None:
        return f"a cluster job of this sweep ended without a result: {str(exc).splitlines()[0]}"
    state = found["state"].removesuffix(")")
    folder = Path(found["path"]).parent
    return (
        f"SLURM job {found['job']} ended without a result (state: {state}); its output and "
        f"error streams are in {folder}"
    )

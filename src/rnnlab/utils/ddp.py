"""DDP that works from Hydra runs and multiruns.

Lightning starts DDP workers by re-running the command line. Under Hydra that re-runs the whole
sweep in every worker (a multirun of multiruns, new run directories, doubled logs: Lightning
issue #11300). Here a worker re-runs exactly this job instead: the config Hydra saved in the
job's ``.hydra/config.yaml``, in the job's own run directory, with nothing saved or logged by
Hydra a second time. After the job, the parent forgets the distributed state it set, so the next
job of a multirun starts its own workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch.distributed
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher, subprocess_script

from rnnlab.utils.errors import ConfigError

# What Lightning's launcher writes into the parent's environment for its workers.
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and directory of DDP worker ``local_rank`` for the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is None:
        raise ConfigError(
            "DDP workers re-read the job's saved config, but hydra.output_subdir=null saves none; "
            "keep hydra.output_subdir set"
        )
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += [
        "--config-path",
        str(run_dir / hydra_cfg.output_subdir),
        "--config-name",
        "config",
        f"hydra.run.dir={run_dir}",
        "hydra.output_subdir=null",  # the parent already saved the config
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
        "hydra/job_logging=disabled",  # rank 0 writes the job's log
        "hydra/hydra_logging=disabled",
    ]
    return command, get_original_cwd()


class JobLauncher(_SubprocessScriptLauncher):
    """Lightning's script launcher, with workers that re-run the current Hydra job only."""

    def _call_children_scripts(self) -> None:
        self.env_before = {key: os.environ.get(key) for key in _LAUNCH_ENV}
        with mock.patch.object(subprocess_script, "_hydra_subprocess_cmd", job_command):
            super()._call_children_scripts()


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose workers are started per Hydra job (see the module docstring)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            assert self.cluster_environment is not None  # DDPStrategy asserts it first
            self._launcher = JobLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )


def finish_job(trainer: Any, timeout: float = 120.0) -> None:
    """After the last fit/test of a job: wait for the workers this process started, close the
    process group and restore the launch environment, so the next job starts cleanly."""
    launcher = getattr(trainer.strategy, "launcher", None)
    if not isinstance(launcher, JobLauncher) or not launcher.procs:
        return
    for proc in launcher.procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in launcher.env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

"""The run directory: what a run writes there, its ``status.json``, refusing a directory that
holds an earlier run, and removing what a failed start left behind (never anything else)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import ConfigError
from rnnlab.utils.files import blocking_file, write_json

# What a run writes into its directory (Hydra's config copy first, then checkpoints, loggers,
# results), besides its log; overwrite=true removes these and nothing else.
RUN_OUTPUTS = (".hydra", "checkpoints", "tensorboard", "csv", "metrics.json", "status.json")
STATUS_FILE = "status.json"


def write_status(output_dir: str | Path, status: str, error: str | None = None) -> None:
    """``status.json`` beside a run's metrics: ``completed``, ``failed`` or ``interrupted``,
    with the reason."""
    write_json(Path(output_dir) / STATUS_FILE, {"status": status, "error": error})


def remove_run_outputs(run_dir: Path, job_name: str) -> None:
    """Delete an earlier run's outputs from ``run_dir``: the entries a run writes and the job's
    log (``<job_name>.log``), never anything else a user keeps there."""
    for entry in run_dir.iterdir():
        if entry.name in (*RUN_OUTPUTS, f"{job_name}.log"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def check_run_dir(cfg: DictConfig, multirun: bool) -> None:
    """The run (or sweep) directory must be creatable, and must not be an earlier run's: refuse
    a path below a file, or a directory that already holds files, before Hydra writes into it.
    ``overwrite=true`` clears the earlier run's outputs (and only those) instead."""
    key = "sweep" if multirun else "run"
    try:
        run_dir = Path(str(OmegaConf.select(cfg, f"hydra.{key}.dir"))).absolute()
    except Exception:  # an interpolation only a running job resolves: leave it to Hydra
        return
    blocker = blocking_file(run_dir)
    if blocker is not None:
        raise ConfigError(
            f"cannot create the run directory {run_dir}: {blocker} is a file; "
            f"set hydra.{key}.dir elsewhere"
        )
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    if cfg.get("overwrite"):
        remove_run_outputs(run_dir, str(OmegaConf.select(cfg, "hydra.job.name")))
        return
    resume = ""
    if key == "run" and "resume" in cfg:
        resume = f"continue it with ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}, "
    raise ConfigError(
        f"the run directory {run_dir} already holds files; choose another hydra.{key}.dir, "
        f"{resume}or pass overwrite=true to replace an earlier run's outputs there"
    )


def remove_fresh_run_dir() -> None:
    """After a failed start, delete what Hydra wrote for this job (its config copy and log) when
    the run wrote no outputs, and the run directory if that leaves it empty. Nothing else is
    touched: the directory may hold the user's own files."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    subdir = hydra_cfg.output_subdir
    ours = {f"{hydra_cfg.job.name}.log", *([subdir] if subdir else [])}
    if not run_dir.is_dir() or any(p.name in RUN_OUTPUTS[1:] for p in run_dir.iterdir()):
        return
    for name in ours:
        entry = run_dir / name
        if entry.is_dir():
            for saved in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                (entry / saved).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                entry.rmdir()
        else:
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only when empty
        run_dir.rmdir()


def remove_fresh_sweep_dir(cfg: DictConfig) -> None:
    """After a sweep that stopped before its first job (a point that does not compose), delete
    the ``multirun.yaml`` Hydra wrote first, and the sweep directory if that leaves it empty."""
    try:
        sweep_dir = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
    except Exception:  # an interpolation only a running job resolves: nothing was written
        return
    if sweep_dir.is_dir() and [p.name for p in sweep_dir.iterdir()] == ["multirun.yaml"]:
        (sweep_dir / "multirun.yaml").unlink()
        with contextlib.suppress(OSError):
            sweep_dir.rmdir()

"""The run directory: what a run writes there, its ``status.json``, the marker that says it is an
rnnlab run (held locked while the run lives, so a second process cannot write into it), refusing
a directory that holds an earlier run or someone's files, and removing what a failed start left
behind (never anything else)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import ConfigError
from rnnlab.utils.files import blocking_file, write_json

# What a run writes into its directory (Hydra's config copy first, then checkpoints, loggers,
# results), besides its log; overwrite=true removes these and nothing else.
RUN_OUTPUTS = (".hydra", "checkpoints", "tensorboard", "csv", "metrics.json", "status.json")
STATUS_FILE = "status.json"
# Written first into every run (and sweep) directory: overwrite=true replaces only directories
# that carry it, and the process running there holds it locked (flock) for the run's life.
MARKER = ".rnnlab-run"
# A sweep's directory also holds Hydra's record of the sweep and one folder per job.
SWEEP_OUTPUTS = ("multirun.yaml", "optimization_results.yaml")

_claimed: list[int] = []  # descriptors of the markers this process holds locked, kept open


def write_status(output_dir: str | Path, status: str, error: str | None = None) -> None:
    """``status.json`` beside a run's metrics: ``completed``, ``failed`` or ``interrupted``,
    with the reason. Best effort where the directory cannot be written (a full disk): the
    one-line error the command prints says the same."""
    with contextlib.suppress(OSError):
        write_json(Path(output_dir) / STATUS_FILE, {"status": status, "error": error})


def mark_run_dir(output_dir: str | Path) -> None:
    """Mark a sweep job's directory as an rnnlab run (the sweep's own marker is held locked)."""
    path = Path(output_dir)
    with contextlib.suppress(OSError):  # an unwritable directory fails the job's first write
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).touch()


def _short(path: Path) -> str:
    """A path fit for a one-line message (a 50,000-character one is cut in the middle)."""
    text = str(path)
    return text if len(text) <= 160 else f"{text[:80]}...{text[-60:]}"


def _dir_of(cfg: DictConfig, multirun: bool) -> tuple[str, Path | None]:
    key = f"hydra.{'sweep' if multirun else 'run'}.dir"
    try:
        return key, Path(str(OmegaConf.select(cfg, key))).absolute()
    except Exception:  # an interpolation only a running job resolves: leave it to Hydra
        return key, None


def _outputs(run_dir: Path, job_name: str) -> list[Path]:
    """What overwrite=true removes from ``run_dir``: an earlier run's outputs and log, or a
    sweep's record and its job folders that are runs themselves."""
    named = (*RUN_OUTPUTS, *SWEEP_OUTPUTS, f"{job_name}.log")
    return [entry for entry in run_dir.iterdir() if entry.name in named or _is_job_run(entry)]


def _is_job_run(entry: Path) -> bool:
    return entry.is_dir() and not entry.is_symlink() and (entry / MARKER).is_file()


def _inputs(cfg: DictConfig) -> dict[str, Path]:
    """The command's settings that name an existing file or folder (a checkpoint, a data file,
    a run to ensemble), by key; Hydra's and the run's own paths aside."""
    found: dict[str, Path] = {}
    plain = OmegaConf.to_container(cfg, resolve=False)
    stack: list[tuple[str, object]] = [("", plain)]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, list):
            node = dict(enumerate(node))
        for key, value in node.items() if isinstance(node, dict) else ():
            path = f"{prefix}{key}"
            if path in ("hydra", "paths"):
                continue
            if isinstance(value, dict | list):
                stack.append((f"{path}.", value))
            elif isinstance(value, str) and value and "${" not in value and len(value) < 4096:
                with contextlib.suppress(OSError, ValueError):
                    if Path(value).exists():
                        found[path] = Path(value).resolve()
    return found


def check_outputs_are_not_inputs(cfg: DictConfig) -> None:
    """``output`` must not name one of the command's inputs (a predict run writing its table over
    its own checkpoint)."""
    output = cfg.get("output")
    if not isinstance(output, str) or not output:
        return
    target = Path(output).resolve()
    for key, path in _inputs(cfg).items():
        if key != "output" and path == target:
            raise ConfigError(
                f"output={output} is this command's input {key}; choose another output path"
            )


def check_run_dir(cfg: DictConfig, multirun: bool) -> None:
    """The run (or sweep) directory must be creatable and must not hold an earlier run: refuse a
    path below a file, or a directory that already holds files, before anything is written.
    ``overwrite=true`` replaces an earlier rnnlab run's outputs there (``claim_run_dir`` removes
    them), but never a folder rnnlab did not write, nor one of this command's own inputs."""
    key, run_dir = _dir_of(cfg, multirun)
    if run_dir is None:
        return
    try:
        blocker = blocking_file(run_dir)
        marked = (run_dir / MARKER).is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise _cannot_create(run_dir, key, exc) from exc
    if blocker is not None:
        raise ConfigError(
            f"cannot create the run directory {_short(run_dir)}: {_short(blocker)} is a file; "
            f"set {key} elsewhere"
        )
    _check_contents(cfg, multirun, run_dir, marked)


def _check_contents(cfg: DictConfig, multirun: bool, run_dir: Path, marked: bool) -> None:
    key = f"hydra.{'sweep' if multirun else 'run'}.dir"
    try:
        held = [p for p in run_dir.iterdir() if p.name != MARKER] if run_dir.is_dir() else []
    except OSError as exc:
        raise ConfigError(
            f"cannot read the run directory {_short(run_dir)}: {exc.strerror}; set {key} elsewhere"
        ) from exc
    if not held:
        return
    if multirun and marked and cfg.get("resume") == "auto":
        return  # a sweep continued in place: each job resumes from its own last.ckpt
    if not cfg.get("overwrite"):
        resume = ""
        if not multirun and "resume" in cfg:
            resume = f"continue it with ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}, "
        raise ConfigError(
            f"the run directory {_short(run_dir)} already holds files; choose another {key}, "
            f"{resume}or pass overwrite=true to replace an earlier run's outputs there"
        )
    if not marked:
        raise ConfigError(
            f"overwrite=true replaces only an rnnlab run's outputs, and {_short(run_dir)} is not "
            f"one (it has no {MARKER}); choose another {key}"
        )
    doomed = [entry.resolve() for entry in _outputs(run_dir, _job_name(cfg))]
    for input_key, path in _inputs(cfg).items():
        if any(path == entry or entry in path.parents for entry in doomed):
            raise ConfigError(
                f"overwrite=true would delete {input_key}={path}, an input of this command, "
                f"from {_short(run_dir)}; choose another {key}"
            )


def _cannot_create(run_dir: Path, key: str, exc: OSError) -> ConfigError:
    fix = f"set {key} elsewhere"
    if exc.errno == errno.ENAMETOOLONG:
        fix = f"shorten task_name, or set a shorter {key}"
    return ConfigError(
        f"cannot create the run directory {_short(run_dir)}: {exc.strerror or exc}; {fix}"
    )


def _job_name(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "hydra.job.name"))


def claim_run_dir(cfg: DictConfig, multirun: bool) -> None:
    """Create the run (or sweep) directory and hold its marker locked until this process ends;
    refuse it in one line when another process holds it, or when it cannot be created. Then,
    with the directory held, check it again and, for overwrite=true, remove the earlier run's
    outputs."""
    key, run_dir = _dir_of(cfg, multirun)
    if run_dir is None:
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        marked = (run_dir / MARKER).is_file()
        descriptor = os.open(run_dir / MARKER, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _cannot_create(run_dir, key, exc) from exc
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(
                f"the run directory {_short(run_dir)} is in use by another rnnlab process; "
                f"choose another {key}, or wait for that run to end"
            ) from exc
        # checked again with the directory held: another command may have written there since
        _check_contents(cfg, multirun, run_dir, marked)
    except BaseException:
        os.close(descriptor)
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif not marked:
            (run_dir / MARKER).unlink(missing_ok=True)
        raise
    if cfg.get("overwrite"):
        for entry in _outputs(run_dir, _job_name(cfg)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    _claimed.append(descriptor)


def remove_fresh_run_dir() -> None:
    """After a failed start, delete what Hydra and rnnlab wrote for this job (its config copy,
    log and marker) when the run wrote no outputs, and the run directory if that leaves it
    empty. Nothing else is touched: the directory may hold the user's own files."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    subdir = hydra_cfg.output_subdir
    ours = {f"{hydra_cfg.job.name}.log", MARKER, *([subdir] if subdir else [])}
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
    the ``multirun.yaml`` Hydra wrote first and the marker, and the sweep directory if that
    leaves it empty."""
    _, sweep_dir = _dir_of(cfg, multirun=True)
    if sweep_dir is None or not sweep_dir.is_dir():
        return
    if {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml", MARKER}:
        for name in ("multirun.yaml", MARKER):
            (sweep_dir / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            sweep_dir.rmdir()


def release_run_dirs() -> None:
    """Let go of the run directories this process holds (they are let go when it ends; tools
    and tests that run several commands in one process call this between them)."""
    while _claimed:
        os.close(_claimed.pop())

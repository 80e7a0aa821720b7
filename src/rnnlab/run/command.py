"""Running a command: its config is composed once, checked, and its job (or a sweep's jobs) run
through Hydra as ``@hydra.main`` runs them, so a mistake on the command line ends in one line
before anything is written or queued.

Hydra's own ``@hydra.main`` composes a config twice (once to learn whether it is a sweep, once to
run) and prints its errors as multi-line reports with exit status 1; this composes once, in sweep
mode (which applies every override except the sweeps themselves), and reads the mode from that.
Hydra's own flags (``--help``, ``--cfg``, ``-cn``, ``--info``, ...) are left to ``@hydra.main``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.types import RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf

from rnnlab.run.checks import (
    check_devices,
    check_optional_groups,
    check_required,
    check_training,
    composition_error,
    first_values,
)
from rnnlab.run.directory import (
    check_outputs_are_not_inputs,
    check_run_dir,
    claim_run_dir,
    remove_fresh_sweep_dir,
)
from rnnlab.run.job import exit_on_interrupt
from rnnlab.slurm import unfinished_job
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError, UserError
from rnnlab.utils.overrides import parse_overrides

SWEEP_FLAGS = ("-m", "--multirun")
# Set in the processes a launcher starts for a run already checked (DDP workers, srun tasks):
# they compose the same command, but its run directory is theirs to share.
WORKER_VARIABLES = ("LOCAL_RANK", "SLURM_PROCID")
VERSION_BASE = "1.3"


@contextlib.contextmanager
def hydra_session(config_name: str) -> Iterator[Any]:
    """Hydra set up for ``conf/`` (and the search-path plugins) as ``@hydra.main`` sets it up,
    the job named after the command; cleared afterwards."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    version.setbase(VERSION_BASE)
    GlobalHydra.instance().clear()
    search_path = create_config_search_path(config_dir())
    try:
        yield Hydra.create_main_hydra2(task_name=config_name, config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


def compose(hydra_app: Any, config_name: str, argv: list[str], checked: bool = True) -> DictConfig:
    """The command's config, composed once; ``checked`` runs the pre-flight checks on it. A
    sweep (``-m``, or ``hydra.mode: MULTIRUN`` in the config) is checked at its first point."""
    overrides = [a for a in argv if a not in SWEEP_FLAGS]
    loader = hydra_app.config_loader
    parsed = parse_overrides(overrides)  # a value Hydra would misread or change, in one line
    if checked:
        check_optional_groups(config_name, overrides)
    try:
        cfg = loader.load_configuration(
            config_name, overrides, run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False
        )
        multirun = len(overrides) < len(argv) or cfg.hydra.mode == RunMode.MULTIRUN
        mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        loader.validate_sweep_overrides_legal(parsed, run_mode=mode, from_shell=True)
        _refuse_unchosen_groups(cfg, mode)
        if cfg.hydra.mode is None:  # as @hydra.main records it, for each job to read
            cfg.hydra.mode = mode
            cfg.hydra.overrides.hydra.append(f"hydra.mode={mode.name}")
        point = cfg
        first_point = first_values(overrides) if checked and multirun else overrides
        if first_point != overrides:
            point = loader.load_configuration(config_name, first_point, run_mode=RunMode.RUN)
    except ConfigError:
        raise
    except Exception as exc:  # Hydra raises several types; all mean a bad command line
        raise composition_error(exc, config_name, first_values(overrides)) from exc
    if checked:
        check_required(point)
        check_devices(point)
        if config_name == "train":
            check_training(point)
        check_run_dir(cfg, multirun)
        check_outputs_are_not_inputs(point)
    return cfg


def _refuse_unchosen_groups(cfg: DictConfig, mode: RunMode) -> None:
    """A group whose default is ``???`` must be chosen on a run's command line; composing in
    sweep mode skips it, as a sweeper may choose it, so a run checks it here."""
    choices = cfg.hydra.runtime.choices
    unchosen = sorted(group for group in choices if OmegaConf.is_missing(choices, group))
    if unchosen and mode == RunMode.RUN:
        raise ConfigError(
            "missing required option"
            + "s" * (len(unchosen) > 1)
            + ": "
            + ", ".join(f"{group}=..." for group in unchosen)
        )


def run(hydra_app: Any, config_name: str, cfg: DictConfig, job: TaskFunction) -> None:
    """Run ``job`` on ``cfg`` (a sweep through its sweeper and launcher), with Hydra's logging,
    run directory and callbacks, as ``@hydra.main`` runs it."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext

    configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
    callbacks = Callbacks(cfg)
    context = HydraContext(config_loader=hydra_app.config_loader, callbacks=callbacks)
    if cfg.hydra.mode == RunMode.MULTIRUN:
        callbacks.on_multirun_start(config=cfg, config_name=config_name)
        sweeper = Plugins.instance().instantiate_sweeper(
            config=cfg, hydra_context=context, task_function=job
        )
        arguments = OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False)
        assert isinstance(arguments, list)  # the command line's overrides, as typed
        sweeper.sweep(arguments=arguments)
        callbacks.on_multirun_end(config=cfg, config_name=config_name)
        return
    callbacks.on_run_start(config=cfg, config_name=config_name)
    ret = run_job(
        hydra_context=context,
        task_function=job,
        config=cfg,
        job_dir_key="hydra.run.dir",
        job_subdir_key=None,
    )
    callbacks.on_run_end(config=cfg, config_name=config_name, job_return=ret)
    _ = ret.return_value  # raises what the job raised


def command(config_name: str, job: TaskFunction) -> None:
    """A console command: ``conf/<config_name>.yaml`` with the command line's overrides, composed
    once, checked, then ``job`` run on it. A mistake ends in one line and exit status 2
    (``HYDRA_FULL_ERROR=1`` shows the traceback instead)."""
    argv = sys.argv[1:]
    if any(a.startswith("-") and a not in SWEEP_FLAGS for a in argv):
        import hydra

        main = hydra.main(
            version_base=VERSION_BASE, config_path=config_dir(), config_name=config_name
        )
        main(job)()
        return
    checked = not any(name in os.environ for name in WORKER_VARIABLES)
    with exit_on_interrupt(), hydra_session(config_name) as hydra_app:
        try:
            cfg = compose(hydra_app, config_name, argv, checked)
            if checked:  # held until this process ends: no second command writes there
                claim_run_dir(cfg, cfg.hydra.mode == RunMode.MULTIRUN)
        except ConfigError as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        try:
            run(hydra_app, config_name, cfg, job)
        except (ConfigCompositionException, OverrideParseException, UserError) as exc:
            # a later point of a sweep that its sweeper could not compose, or a sweeper's refusal
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            remove_fresh_sweep_dir(cfg)
            line = exc if isinstance(exc, UserError) else composition_error(exc, config_name, [])
            print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
        except Exception as exc:
            # a cluster job cancelled or killed: not a mistake, but no traceback either
            unfinished = unfinished_job(exc)
            if unfinished is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {unfinished}", file=sys.stderr)
            sys.exit(1)


def check(config_name: str, argv: list[str]) -> DictConfig:
    """Compose and check a command line as ``command`` does, without running it (for tests and
    tools); raises ``ConfigError``."""
    with hydra_session(config_name) as hydra_app:
        return compose(hydra_app, config_name, argv)

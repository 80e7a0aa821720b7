"""Check a command line before Hydra starts any job: a key that does not exist, an unknown
option or launcher, or more GPUs than the machine has end in one line on stderr (exit 2) instead
of Hydra's multi-line report, and before a sweep has run (or queued) anything."""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rnnlab.utils.errors import ConfigError
from rnnlab.utils.files import blocking_file, remove_run_outputs
from rnnlab.utils.overrides import parse_overrides

# Lines of Hydra's reports that say nothing about the mistake.
_NOISE = ("full_key:", "object_type=", "Config search path", "provider=")
# Groups selected with `optional` in train.yaml: Hydra silently ignores an option that does not
# exist there, so a typo such as experiment=forcast would run the default experiment.
_OPTIONAL_GROUPS = ("experiment", "hparams_search", "debug")
# Hydra's own flags (--cfg, --help, -cp, ...) and DDP/SLURM workers skip the check.
_SWEEP_FLAGS = ("-m", "--multirun")


def _one_line(exc: BaseException) -> str:
    """Hydra's composition errors span lines (and a cause); fold them into one."""
    parts: list[str] = []
    options: list[str] = []
    for text in (str(exc), str(exc.__cause__ or "")):
        for line in text.splitlines():
            if line.strip().startswith(_NOISE):
                continue
            if line.startswith("\t"):
                options.append(line.strip())
            elif line.strip():
                parts.append(line.strip().rstrip(".:"))
    message = "; ".join(dict.fromkeys(parts))
    return f"{message}: {', '.join(options)}" if options else message


def first_values(args: list[str]) -> list[str]:
    """The overrides with each discrete sweep (``a=1,2``, ``range``, ``choice``) cut to its first
    value; Optuna's intervals are left to the sweeper."""
    single = []
    for override in parse_overrides(args):
        if not override.is_sweep_override():
            assert override.input_line is not None  # parse_overrides sets it on every override
            single.append(override.input_line)
        elif override.is_discrete_sweep():
            first = next(iter(override.sweep_string_iterator()))
            single.append(f"{override.get_key_element()}={first}")
    return single


def _options(group: str, config_name: str, overrides: list[str]) -> list[str]:
    """The options of ``group`` on Hydra's whole search path: rnnlab's conf/ and whatever the
    command adds with ``hydra.searchpath`` (a user's own experiments). Only those overrides are
    passed on, so a mistake elsewhere on the command line cannot hide the options."""
    from hydra.core.global_hydra import GlobalHydra

    search = [o for o in overrides if o.lstrip("+").startswith("hydra.searchpath=")]
    loader = GlobalHydra.instance().config_loader()
    return sorted(loader.get_group_options(group, config_name=config_name, overrides=search))


def _close(word: str, candidates: list[str]) -> str:
    """`` (did you mean X?)`` for the closest candidate, or nothing."""
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {found[0]}?)" if found else ""


def _check_optional_groups(config_name: str, overrides: list[str]) -> None:
    for override in overrides:
        group, _, option = override.lstrip("+").partition("=")
        if group in _OPTIONAL_GROUPS and option not in ("", "null"):
            available = _options(group, config_name, overrides)
            if option not in available:
                raise ConfigError(
                    f"unknown {group} {option!r}{_close(option, available)}; "
                    f"choose one of {', '.join(available)}"
                )


def _keys(node: object, prefix: str = "") -> list[str]:
    """Every dotted key of a plain config tree."""
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        found += [path, *_keys(value, f"{path}.")]
    return found


def _did_you_mean(message: str, config_name: str, overrides: list[str]) -> str:
    """A suggestion for the mistake in Hydra's ``message``: the option of a config group, or the
    key, that is closest to what was typed (a key with the same name elsewhere first, so
    ``model.cell`` finds ``model.encoder.cell``)."""
    from hydra import compose
    from omegaconf import OmegaConf

    missing_option = re.search(r"Could not find '([^']+)/([^'/]+)'", message)
    if missing_option:
        group, option = missing_option.groups()
        return _close(option, _options(group, config_name, overrides))
    bad_key = re.search(r"Could not override '([^']+)'", message)
    if not bad_key:
        return ""
    key = bad_key.group(1)
    try:  # the config as composed without the failing override
        rest = [o for o in overrides if o.lstrip("+~").split("=")[0] != key]
        cfg = compose(config_name, overrides=rest)
    except Exception:
        return ""
    keys = _keys(OmegaConf.to_container(cfg, resolve=False))
    same_name = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    if same_name:
        return f" (did you mean {same_name[0]}?)"
    return _close(key, keys)


def _check_devices(cfg: DictConfig) -> None:
    launcher = str(cfg.hydra.launcher.get("_target_", ""))
    if "Slurm" in launcher:  # devices are the cluster nodes', not this machine's
        return
    trainer = cfg.get("trainer") or {}
    devices = trainer.get("devices")
    if trainer.get("accelerator") in ("gpu", "cuda") and isinstance(devices, int):
        import torch

        available = torch.cuda.device_count()
        if devices > available:
            raise ConfigError(
                f"trainer.devices={devices} asks for {devices} GPUs but this machine has "
                f"{available}; lower trainer.devices, or use trainer=ddp_cpu / trainer=cpu"
            )


def check(config_name: str, argv: list[str]) -> None:
    """Compose ``config_name`` with the command line's overrides (sweeps at their first value)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rnnlab.utils.config import config_dir

    overrides = first_values([a for a in argv if a not in _SWEEP_FLAGS])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            _check_optional_groups(config_name, overrides)
            try:
                cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            except Exception as exc:  # Hydra raises several types; all mean a bad command line
                hint = _did_you_mean(str(exc), config_name, overrides)
                raise ConfigError(_one_line(exc) + hint) from exc
    finally:
        GlobalHydra.instance().clear()
    _check_required(cfg)
    _check_devices(cfg)
    _check_run_dir(cfg, multirun=any(a in _SWEEP_FLAGS for a in argv))


def _check_run_dir(cfg: DictConfig, multirun: bool = False) -> None:
    """The run directory must be creatable, and must not be an earlier run's: refuse a path
    below a file, or a directory that already holds files, before Hydra writes into it.
    ``overwrite=true`` clears the earlier run's outputs (and only those) instead."""
    from omegaconf import OmegaConf

    multirun = multirun or OmegaConf.select(cfg, "hydra.mode") == "MULTIRUN"
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


def _check_required(cfg: DictConfig) -> None:
    """Values marked ``???`` that the user must give (the model's are filled from the data)."""
    from omegaconf import OmegaConf

    # unresolved: interpolations such as ${hydra:...} only resolve inside a running job
    plain = OmegaConf.to_container(cfg, resolve=False)
    missing: list[str] = []
    stack: list[tuple[str, Any]] = [("", plain)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            if isinstance(value, dict) and key not in ("hydra", "model"):
                stack.append((f"{prefix}{key}.", value))
            elif value == "???":
                missing.append(f"{prefix}{key}")
    missing.sort()
    if missing:
        raise ConfigError(
            f"missing required value{'s' * (len(missing) > 1)}: "
            + ", ".join(f"{k}=..." for k in missing)
        )


def preflight(config_name: str, argv: list[str] | None = None) -> None:
    """Run ``check`` for a user's command line; exit 2 with one line on failure."""
    argv = sys.argv[1:] if argv is None else argv
    workers = ("LOCAL_RANK", "SLURM_PROCID")
    if any(k in os.environ for k in workers) or any(
        a.startswith("-") and a not in _SWEEP_FLAGS for a in argv
    ):
        return
    try:
        check(config_name, argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

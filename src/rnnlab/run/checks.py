"""Pre-flight checks on a command's composed config, before Hydra starts any job: a key that
does not exist, an unknown option, a missing required value or more GPUs than the machine has
end in one line (a ``ConfigError``, exit 2) instead of Hydra's multi-line report, and before a
sweep has run (or queued) anything."""

from __future__ import annotations

import difflib
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import ConfigError
from rnnlab.utils.overrides import parse_overrides

# Lines of Hydra's reports that say nothing about the mistake.
_NOISE = ("full_key:", "object_type=", "Config search path", "provider=")
# Groups selected with `optional` in train.yaml: Hydra silently ignores an option that does not
# exist there, so a typo such as experiment=forcast would run the default experiment.
_OPTIONAL_GROUPS = ("experiment", "hparams_search", "debug")


def composition_error(exc: BaseException, config_name: str, overrides: list[str]) -> ConfigError:
    """Hydra's composition error (several types, all meaning a bad command line) as one line,
    with the closest key or option when there is one."""
    return ConfigError(_one_line(exc) + _did_you_mean(str(exc), config_name, overrides))


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


def first_values(overrides: list[str]) -> list[str]:
    """The overrides with each discrete sweep (``a=1,2``, ``range``, ``choice``) cut to its first
    value; Optuna's intervals are left to the sweeper."""
    single = []
    for override in parse_overrides(overrides):
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


def check_optional_groups(config_name: str, overrides: list[str]) -> None:
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
    ``model.cell`` finds ``model.encoder.cell``). Only this error path composes the config a
    second time, without the failing override, to list the keys there are."""
    from hydra import compose

    missing_option = re.search(r"Could not find '([^']+)/([^'/]+)'", message)
    if missing_option:
        group, option = missing_option.groups()
        return _close(option, _options(group, config_name, overrides))
    bad_key = re.search(r"Could not override '([^']+)'", message)
    if not bad_key:
        return ""
    key = bad_key.group(1)
    try:
        rest = [o for o in overrides if o.lstrip("+~").split("=")[0] != key]
        cfg = compose(config_name, overrides=first_values(rest))
    except Exception:
        return ""
    keys = _keys(OmegaConf.to_container(cfg, resolve=False))
    same_name = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    if same_name:
        return f" (did you mean {same_name[0]}?)"
    return _close(key, keys)


def check_devices(cfg: DictConfig) -> None:
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


def check_required(cfg: DictConfig) -> None:
    """Values marked ``???`` that the user must give (the model's are filled from the data)."""
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


# What ``lightning.seed_everything`` accepts (numpy's seed range).
MAX_SEED = 2**32 - 1


def check_training(cfg: DictConfig) -> None:
    """A training run's seed, length and weight averaging: a seed the seeding functions accept,
    at least one epoch (``trainer.max_epochs=0`` would test an untrained model and report it as a
    result), and one averaging callback, not NT-ASGD's and EMA's merged into one."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    if isinstance(epochs, int) and not isinstance(epochs, bool) and (epochs == 0 or epochs < -1):
        raise ConfigError(
            f"trainer.max_epochs={epochs} trains nothing; set it to 1 or more "
            "(or -1 to train until early stopping or max_steps ends the run)"
        )
    averaging = OmegaConf.select(cfg, "callbacks.weight_averaging", default=None)
    if isinstance(averaging, DictConfig) and "nonmono" in averaging and "decay" in averaging:
        raise ConfigError(
            "model/optimizer=ntasgd averages the weights itself, and callbacks=ema would too: "
            "drop callbacks=ema (or choose another optimizer)"
        )

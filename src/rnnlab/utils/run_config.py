"""Settings a run settles after Hydra composed its config (and saved a copy in the run's
``.hydra/config.yaml``), such as the name of the user's own data files: written into both, so
that the config the run uses, the checkpoint, HParams and the saved copy all tell what ran."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from rnnlab.utils.files import atomic_path


def settle(cfg: DictConfig, section: str, values: Mapping[str, Any]) -> None:
    """Set ``values`` in ``cfg[section]`` and in this job's saved config, where they differ."""
    changed = {key: value for key, value in values.items() if cfg[section].get(key) != value}
    if not changed:
        return
    with open_dict(cfg):
        for key, value in changed.items():
            cfg[section][key] = value
    saved = saved_config_path(cfg)
    if saved is None:
        return
    stored = OmegaConf.load(saved)  # as Hydra wrote it: interpolations stay unresolved
    for key, value in changed.items():
        OmegaConf.update(stored, f"{section}.{key}", value, force_add=True)
    with atomic_path(saved) as tmp:
        tmp.write_text(OmegaConf.to_yaml(stored), encoding="utf-8")


def saved_config_path(cfg: DictConfig) -> Path | None:
    """The ``.hydra/config.yaml`` Hydra saved for the job running ``cfg``; None outside a Hydra
    job, in a DDP worker (it saves none: it re-reads its parent's) and for a config composed
    apart from the job (a test's or a script's, with its own output directory)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is None:
        return None
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        output_dir = OmegaConf.select(cfg, "paths.output_dir")
    except Exception:  # an interpolation this process cannot resolve: not this job's config
        return None
    if output_dir is None or Path(str(output_dir)).absolute() != run_dir.absolute():
        return None
    path = run_dir / hydra_cfg.output_subdir / "config.yaml"
    return path if path.is_file() else None

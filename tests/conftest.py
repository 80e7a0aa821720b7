"""Shared helpers: compose the real Hydra configs the way the entry points do."""

from __future__ import annotations

import os

# One compute thread for torch here and in every command a test starts, before torch is first
# imported: with the cores shared (a busy CI machine), two threads spinning at each parallel
# region made the same job 6-16x slower than one. The threads tests set their own values.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hypothesis import settings
from omegaconf import DictConfig, open_dict

from rnnlab.utils.config import config_dir

# Property tests draw the same examples on every run and machine, so a pass or a failure
# repeats (a test's own @settings, such as max_examples, still applies).
settings.register_profile("rnnlab", derandomize=True)
settings.load_profile("rnnlab")

# Small and quick, yet a full run: fit, checkpoints, test with the best checkpoint.
FAST = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=3",
    "model.encoder.hidden_size=16",
    "callbacks.learning_rate_monitor=null",
]


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with overrides; point the run directory at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        # a text file's cache beside the run, not in the checkout's logs/ (unless a test names one)
        data = cfg.get("data")
        if (
            data is not None
            and "cache_dir" in data
            and not any(o.startswith("data.cache_dir=") for o in overrides)
        ):
            data.cache_dir = str(output_dir / "cache")
    return cfg


TS_HEADER = """@problemName toy
@timeStamps false
@missing true
@univariate true
@equalLength false
@classLabel true a b
@data
"""


def write_ts(path: Path, rows: list[str]) -> str:
    """Write a small univariate, labelled .ts file (sample values, then ':label', per row)."""
    path.write_text(TS_HEADER + "\n".join(rows) + "\n")
    return str(path)

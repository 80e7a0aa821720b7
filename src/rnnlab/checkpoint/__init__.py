"""Checkpoints: the format (``format``), resuming a run (``resume``), rebuilding a run's data and
model from one (``rebuild``) with the builder training uses too (``build``, checking against
``allowlist``), and where stored values differ (``diff``). Every name other modules and
``conf/`` use is here."""

from rnnlab.checkpoint.allowlist import USER_CLASSES, allowed_places
from rnnlab.checkpoint.build import NotBuildable, build_part
from rnnlab.checkpoint.format import (
    CONFIG_KEY,
    DATA_KEY,
    FORMAT,
    FORMAT_KEY,
    METRICS_KEY,
    AtomicCheckpointIO,
    StoreRunState,
    epoch_metrics,
    load_checkpoint,
    save_atomically,
    stored_data_state,
)
from rnnlab.checkpoint.rebuild import Restored, restore
from rnnlab.checkpoint.resume import (
    ResumePoint,
    adopt,
    find_resume_checkpoint,
    plan_resume,
)

__all__ = [
    "CONFIG_KEY",
    "DATA_KEY",
    "FORMAT",
    "FORMAT_KEY",
    "METRICS_KEY",
    "USER_CLASSES",
    "AtomicCheckpointIO",
    "NotBuildable",
    "Restored",
    "ResumePoint",
    "StoreRunState",
    "adopt",
    "allowed_places",
    "build_part",
    "epoch_metrics",
    "find_resume_checkpoint",
    "load_checkpoint",
    "plan_resume",
    "restore",
    "save_atomically",
    "stored_data_state",
]

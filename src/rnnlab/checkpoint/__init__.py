"""Checkpoints: the format (``format``), resuming a run (``resume``) and rebuilding a run's data
and model from one (``rebuild``). Every name other modules and ``conf/`` use is here."""

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
    "AtomicCheckpointIO",
    "Restored",
    "ResumePoint",
    "StoreRunState",
    "adopt",
    "epoch_metrics",
    "find_resume_checkpoint",
    "load_checkpoint",
    "plan_resume",
    "restore",
    "save_atomically",
    "stored_data_state",
]

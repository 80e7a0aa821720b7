"""Checkpoints written atomically: a crash mid-write never leaves a torn ``last.ckpt``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same directory, flushes it to disk and
    renames it over the target; a reader (or a resumed run) sees the old file or the new one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)

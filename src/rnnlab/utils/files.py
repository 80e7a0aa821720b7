"""Writing outputs so that a reader (or a crash) never sees half a file, and finding early that
a path cannot be written at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

# What a run writes into its directory (Hydra's config copy first, then checkpoints, loggers,
# results), besides its log; overwrite=true removes these and nothing else.
RUN_OUTPUTS = (".hydra", "checkpoints", "tensorboard", "csv", "metrics.json", "status.json")
STATUS_FILE = "status.json"


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def blocking_file(path: str | Path) -> Path | None:
    """The file standing where ``path`` or one of its folders would have to be (None when the
    path can be created as far as files are concerned)."""
    path = Path(path).absolute()
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            return None if ancestor.is_dir() else ancestor
    return None


def remove_run_outputs(run_dir: Path, job_name: str) -> None:
    """Delete an earlier run's outputs from ``run_dir``: the entries a run writes and the job's
    log (``<job_name>.log``), never anything else a user keeps there."""
    for entry in run_dir.iterdir():
        if entry.name in (*RUN_OUTPUTS, f"{job_name}.log"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def write_status(output_dir: str | Path, status: str, error: str | None = None) -> None:
    """``status.json`` beside a run's metrics: ``completed``, ``failed`` or ``interrupted``,
    with the reason."""
    write_json(Path(output_dir) / STATUS_FILE, {"status": status, "error": error})

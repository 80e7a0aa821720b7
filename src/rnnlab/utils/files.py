"""Writing outputs so that a reader (or a crash) never sees half a file, and finding early that
a path cannot be written at all."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlab.utils.errors import DataError, first_line

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to. When the block ends without error the file
    is flushed to disk and renamed over ``path``, so a reader (or a crash) sees the old file or
    the new one, never half of one; on error it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics (tensors, numbers) as plain floats."""
    return {k: float(v) for k, v in metrics.items()}


def write_metrics(metrics: Mapping[str, Any], output_dir: str | Path) -> Path:
    """Write ``metrics.json`` atomically."""
    return write_json(Path(output_dir) / "metrics.json", dict(metrics))


def blocking_file(path: str | Path) -> Path | None:
    """The file standing where ``path`` or one of its folders would have to be (None when the
    path can be created as far as files are concerned)."""
    path = Path(path).absolute()
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            return None if ancestor.is_dir() else ancestor
    return None


def write_table(frame: pd.DataFrame, path: Path, key: str = "output") -> None:
    """Write a CSV atomically: a reader never sees half of it, a failure leaves nothing.
    ``key`` is the setting that named ``path``, for the error message."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    except OSError as exc:
        raise DataError(
            f"cannot write {path}: {exc.strerror or first_line(exc)}; choose a writable {key}="
        ) from exc

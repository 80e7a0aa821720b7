"""Writing outputs so that a reader (or a crash) never sees half a file, and finding early that
a path cannot be written at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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

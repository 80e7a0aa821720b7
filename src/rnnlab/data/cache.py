"""A cache on disk of the arrays a user's data file is turned into, so that the file is parsed
once and later runs (other DDP ranks, other jobs on a shared file system) memory-map the result.

An entry is a folder ``<data.cache_dir>/<kind>-<hash of its key>/`` of plain ``.npy`` arrays and
a ``meta.json`` that repeats the whole key (the file's content SHA-256 and every setting that
shapes the arrays) and each array's dtype and shape. It is written into a temporary folder
beside it and renamed into place in one step, so a reader sees a whole entry or none; when two
processes build the same entry at once, the first rename wins and the other's copy is deleted.

Nothing read back is trusted: an entry whose ``meta.json`` does not parse or repeat the key, or
whose arrays are missing, truncated, not plain numeric ``.npy`` files (``allow_pickle=False``) or
of another dtype or shape, or that fails the caller's own check (ids within the vocabulary), is
moved aside, deleted and rebuilt, with a warning. Arrays are mapped copy-on-write
(``mmap_mode="c"``): pages are read from disk when used, and a tensor made from them
(``torch.from_numpy`` wants a writable array) can never write back into the cache.

A cache folder that cannot be created or written (a file in its place, no permission) is not
an error: the run warns once and reads its data without the cache, as with
``data.cache_dir=null``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from rnnlab.utils.errors import DataError

log = logging.getLogger(__name__)

# bumped whenever what an entry holds changes meaning: older entries then miss and are rebuilt
CACHE_FORMAT = 1
_META = "meta.json"


class InvalidEntry(ValueError):
    """A cache entry that cannot be trusted (raised by an entry's own check)."""


def drop_pages(array: object) -> None:
    """Give back the pages of a memory-mapped array (``np.load(mmap_mode=...)``) that this
    process has read: they are read from the file again when next used. A pass over a large
    cached array would otherwise keep all of it in this process's resident memory. Only for
    arrays never written to (a copy-on-write page's changes would be lost); nothing for an
    array in memory."""
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


def usable_folder(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The cache folder, created if need be; None (with a warning) where it cannot be written,
    and None without one for ``data.cache_dir=null``."""
    if cache_dir is None:
        return None
    folder = Path(cache_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{uuid.uuid4().hex}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        log.warning(
            "data.cache_dir=%s cannot be used (%s): reading the data without the cache; set "
            "data.cache_dir to a writable folder, or null to silence this",
            cache_dir,
            exc.strerror or exc,
        )
        return None
    return folder


def entry_name(kind: str, key: dict[str, Any]) -> str:
    """The folder name of the entry of ``kind`` ('text', ...) for ``key`` (JSON values)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return f"{kind}-{digest[:32]}"


def discard(path: Path) -> None:
    """Remove an entry: first renamed aside (one step, so no reader finds it half deleted; a
    process that has it mapped keeps its pages), then deleted."""
    aside = path.with_name(f".stale-{uuid.uuid4().hex}")
    try:
        path.rename(aside)
    except OSError:
        return  # gone already (another process discarded it) or not ours to move
    shutil.rmtree(aside, ignore_errors=True)


def load_entry(
    folder: Path,
    name: str,
    key: dict[str, Any],
    check: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The entry ``name``'s metadata (its ``info``) and arrays (mapped), or None when it is
    absent; an entry that fails a check is discarded (and None returned)."""
    path = folder / name
    if not path.is_dir():
        return None
    try:
        meta = json.loads((path / _META).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise InvalidEntry("written by another version")
        if meta.get("key") != key:
            raise InvalidEntry("its key differs")
        arrays = {}
        for array, (dtype, shape) in meta["arrays"].items():
            loaded = np.load(path / f"{array}.npy", mmap_mode="c", allow_pickle=False)
            if loaded.dtype != np.dtype(dtype) or list(loaded.shape) != shape:
                raise InvalidEntry(f"{array}.npy is {loaded.dtype} {loaded.shape}")
            arrays[array] = loaded
        if check is not None:
            check(meta["info"], arrays)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("the data cache %s is damaged (%s): rebuilding it", path, exc)
        discard(path)
        return None
    return meta["info"], arrays


def load_written(
    folder: Path,
    name: str,
    key: dict[str, Any],
    check: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``load_entry`` of an entry this process has just written. It fails only when another
    process put a damaged entry of the same name in place meanwhile (discarded by then): a
    user's error, not a bug, so one line naming the way out."""
    found = load_entry(folder, name, key, check)
    if found is None:
        raise DataError(
            f"the data cache {folder / name} was damaged as soon as it was written (is another "
            "run writing the same entry?); run again, or set data.cache_dir=null to read the "
            "file without a cache"
        )
    return found


class EntryWriter:
    """Writes one entry into a temporary folder; ``commit`` renames it into place. Used as a
    context manager: an entry not committed (an error while building) is deleted."""

    def __init__(self, folder: Path, name: str, key: dict[str, Any]) -> None:
        self.final = folder / name
        self.key = key
        self.temporary = folder / f".tmp-{name}-{uuid.uuid4().hex}"
        self.temporary.mkdir()
        self.arrays: dict[str, tuple[str, list[int]]] = {}

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.temporary, ignore_errors=True)  # nothing left once committed

    def save(self, name: str, array: np.ndarray) -> None:
        np.save(self.temporary / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        self.arrays[name] = (array.dtype.str, list(array.shape))

    def open_array(self, name: str, dtype: np.dtype, length: int) -> IO[bytes]:
        """A file to write a 1-D array of ``length`` values of ``dtype`` into, block by block
        (``array.tofile``), without holding it in memory; its header is written."""
        stream = (self.temporary / f"{name}.npy").open("wb")
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(stream, {**header, "shape": (length,)})
        self.arrays[name] = (dtype.str, [length])
        return stream

    def open_growing(self, name: str, dtype: np.dtype, row_shape: tuple[int, ...]) -> GrowingArray:
        """An array of rows of ``row_shape`` whose number is known only at the end: appended
        block by block (``GrowingArray.append``), its header completed by ``close``."""
        return GrowingArray(self, name, np.dtype(dtype), row_shape)

    def commit(self, info: dict[str, Any]) -> None:
        """Write the metadata and move the entry into place (unless another process did)."""
        meta = {"format": CACHE_FORMAT, "key": self.key, "info": info, "arrays": self.arrays}
        (self.temporary / _META).write_text(json.dumps(meta), encoding="utf-8")
        try:
            self.temporary.rename(self.final)
        except OSError:
            if not self.final.is_dir():
                raise
            log.info("the data cache %s was written meanwhile by another process", self.final)


class GrowingArray:
    """A ``.npy`` file written a block of rows at a time. Its header is written first with a
    placeholder number of rows and rewritten with the real one by ``close``; a version 1.0
    header is padded to 128 bytes for any shape up to trillions of rows, so the rewrite
    never moves the data (checked all the same)."""

    def __init__(
        self, writer: EntryWriter, name: str, dtype: np.dtype, row_shape: tuple[int, ...]
    ) -> None:
        self.writer, self.name, self.dtype, self.row_shape = writer, name, dtype, row_shape
        self.rows = 0
        self.stream = (writer.temporary / f"{name}.npy").open("wb")
        self.header_bytes = self._header(1 << 40)

    def _header(self, rows: int) -> int:
        self.stream.seek(0)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(
            self.stream, {**header, "shape": (rows, *self.row_shape)}
        )
        return self.stream.tell()

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.name}: rows of {block.shape[1:]}, not {self.row_shape}")
        block.tofile(self.stream)
        self.rows += len(block)

    def close(self) -> None:
        end = self.stream.tell()
        if self._header(self.rows) != self.header_bytes:
            raise ValueError(f"{self.name}.npy: its header changed length")
        self.stream.seek(end)
        self.stream.close()
        self.writer.arrays[self.name] = (self.dtype.str, [self.rows, *self.row_shape])

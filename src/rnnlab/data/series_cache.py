"""A forecasting CSV's series built once into the disk cache (``data.cache_dir``) by a read of
a block of rows at a time (``series_stream``), and memory-mapped from there by every later run.

An entry (``series-<hash>/``) is keyed by the SHA-256 of the file's bytes, the columns read
(time, values in order, series) and ``SERIES_READER``; it holds the grouped rows: ``times``,
``values`` (float64, rows x columns, NaN where missing), ``rows`` (each row's position in the
file, for messages) and ``ends`` (int64, where each series ends), the series' names in its
``meta.json``. The arrays are those ``series.split_series`` makes of the whole table, bit for
bit; a file it refuses is refused with the same message and not cached. The missing-value
policy, the splits and everything after them are applied on every run, to the mapped arrays.
Besides ``cache.load_entry``'s checks, an entry's ends must increase from above 0 to the number
of rows, one per name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnlab.data import cache
from rnnlab.data.inputs import RAISE_LIMIT
from rnnlab.data.memory import file_size
from rnnlab.data.progress import setup_step
from rnnlab.data.series import Series, Table, series_views
from rnnlab.data.series_stream import CHUNK_ROWS, WholeTable, read_series_arrays
from rnnlab.data.ts_cache import file_sha256

log = logging.getLogger(__name__)

# bumped whenever the reading changes what an entry holds: older entries then miss
SERIES_READER = 1
_ARRAYS = ("times", "values", "rows", "ends")


def cached_series(
    folder: Path,
    path: str | Path,
    time_column: str,
    value_columns: list[str],
    series_column: str | None,
    max_file_mb: float,
    setting: str = "data.file",
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[Table, list[Series], bool] | None:
    """The series of the CSV file at ``path`` from the cache in ``folder``, built there first if
    need be: the table they are named by in messages (no rows: they are in the arrays), the
    series (views of the mapped arrays) and whether this call built the entry. None where the
    file needs the whole-table read (``series_stream.WholeTable``)."""
    with setup_step(f"{setting}={path}: its SHA-256, the cache's key", file_size(path)):
        sha = file_sha256(path, setting, max_file_mb, RAISE_LIMIT)
    key = {
        "file_sha256": sha,
        "time_column": time_column,
        "value_columns": list(value_columns),
        "series_column": series_column,
        "reader": SERIES_READER,
    }
    name = cache.entry_name("series", key)
    found = cache.load_entry(folder, name, key, _check)
    built = found is None
    if found is None:
        with setup_step(f"{setting}={path}: reading its series into the cache", file_size(path)):
            try:
                arrays = read_series_arrays(
                    path, time_column, value_columns, series_column, chunk_rows
                )
            except WholeTable:
                return None
            with cache.EntryWriter(folder, name, key) as writer:
                for array in _ARRAYS:
                    writer.save(array, getattr(arrays, array))
                writer.commit({"names": arrays.names})
            del arrays
        log.info("%s=%s: series cached in %s", setting, path, writer.final)
        found = cache.load_written(folder, name, key, _check)
    else:
        log.info("%s=%s: series read from the cache %s", setting, path, folder / name)
    info, mapped = found
    table = Table(pd.DataFrame(), str(path), from_file=True)
    views = series_views(table, info["names"], *_grouped(mapped), series_column, check=False)
    return table, views, built


def _grouped(arrays: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    times, values, rows, ends = (arrays[name] for name in _ARRAYS)
    return times, values, rows, ends


def _check(info: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    times, values, rows, ends = _grouped(arrays)
    names = info["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise cache.InvalidEntry("series names that are not a list of text")
    if times.ndim != 1:
        raise cache.InvalidEntry(f"times.npy is {times.dtype} {times.shape}")
    if values.ndim != 2 or values.dtype != np.float64:
        raise cache.InvalidEntry(f"values.npy is {values.dtype} {values.shape}")
    if rows.dtype != np.int64:
        raise cache.InvalidEntry(f"rows.npy is {rows.dtype} {rows.shape}")
    if len(values) != len(times) or rows.shape != times.shape:
        raise cache.InvalidEntry("times, values and rows of different lengths")
    if ends.dtype != np.int64:
        raise cache.InvalidEntry(f"ends.npy is {ends.dtype} {ends.shape}")
    if ends.shape != (len(names),) or not len(ends):
        raise cache.InvalidEntry("not one end a series")
    if ends[0] < 1 or ends[-1] != len(times) or (np.diff(ends) < 1).any():
        raise cache.InvalidEntry("ends.npy does not span the rows")

"""A CSV of many series read a block of rows at a time into contiguous arrays: each series'
times, values and table positions one after another, never the whole table as a DataFrame.

Blocks of ``CHUNK_ROWS`` rows are parsed as the whole-table read parses the file (pandas' C
parser, every column, a line with too many fields refused), and each block is checked by the
same functions as the whole-table read (``series.split_series``), with its rows counted from
its first line, and its series ids coded in order of first appearance over the file. What the
whole-table read would refuse is refused with the same message: a block's problems are kept by
kind (time, series id, each value column in turn) and the first of the earliest kind is raised
once the file is read, as the whole-table read checks a column at a time. Where the answer
would depend on the whole table, ``WholeTable`` is raised and the caller reads the file as a
table instead, which then gives its own answer: a header with a column missing or named twice,
a line pandas refuses, no rows, a column whose type differs between blocks (pandas infers it
over the whole file) unless a problem found first ends the read, time stamps whose UTC offset
differs between blocks, and times out of order in a file without a series column (whose
message suggests one). One difference remains, pandas' own: its chunked reader does not count
the fields of a block's first line, so a line with one field too many that starts a block is
read without its last field, where the whole-table read refuses the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnlab.data.series import (
    Table,
    _numbers,
    _offset,
    _times,
    group_rows,
    series_codes,
    series_views,
    setting_name,
)
from rnnlab.utils.errors import DataError

CHUNK_ROWS = 1 << 20


class WholeTable(Exception):
    """The file needs the whole-table read (``series.read_csv``) for its verdict."""


@dataclass
class SeriesArrays:
    """Every series' rows, grouped (``series.group_rows``): ``times``, ``values`` (rows,
    columns; float64, NaN where missing), ``rows`` (each row's position in the file) and
    ``ends`` (where each series ends), with the series' ``names``."""

    names: list[str]
    times: np.ndarray
    values: np.ndarray
    rows: np.ndarray
    ends: np.ndarray


def _check_header(path: Path, needed: list[str]) -> None:
    """Leave to the whole-table read a header with the ``needed`` columns (named as settings
    name them) missing or any column twice."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        written = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    except ValueError as exc:
        raise WholeTable from exc
    names = [setting_name(c) for c in header]
    raw = written.iloc[0].tolist() if len(written) else []
    if len(set(names)) != len(names) or len(set(raw)) != len(raw):
        raise WholeTable
    if any(c not in names for c in needed):
        raise WholeTable


def _same_kind(first: Any, dtype: Any, numbers: bool) -> bool:
    """Whether a block's column type gives the values the whole file's would: the same type,
    or for ``numbers`` (values, times) integers and floats, read alike."""
    return first == dtype or (numbers and first.kind in "iuf" and dtype.kind in "iuf")


def read_series_arrays(
    path: str | Path,
    time_column: str,
    value_columns: list[str],
    series_column: str | None,
    chunk_rows: int = CHUNK_ROWS,
) -> SeriesArrays:
    """The series of the CSV file at ``path`` (columns named as settings name them), read
    ``chunk_rows`` rows at a time and checked as ``series.split_series`` checks a table."""
    path = Path(path)
    needed = [time_column, *value_columns, *([series_column] if series_column else [])]
    _check_header(path, needed)
    kinds: list[Any] = []
    offset: str | None = None
    found: dict[int, DataError] = {}  # the first problem of each kind: time, id, each column
    index: dict[str, int] = {}
    codes: list[np.ndarray] = []
    times: list[np.ndarray] = []
    columns: list[list[np.ndarray]] = [[] for _ in value_columns]
    first = 0
    try:
        # every column, as the whole-table read parses them (its refusals of a line too)
        reader = pd.read_csv(path, chunksize=chunk_rows)
        for block in reader:
            block = block.rename(columns=setting_name).reset_index(drop=True)
            if not len(block):
                continue
            dtypes = [block[c].dtype for c in needed]
            kinds = kinds or dtypes
            numeric = [True] * (1 + len(value_columns)) + [False]
            same = list(map(_same_kind, kinds, dtypes, numeric))
            if not same[0]:
                raise WholeTable
            table = Table(block, str(path), from_file=True, first=first)
            first += len(block)
            done: list[Any] = []
            for kind in range(min(found, default=2 + len(value_columns))):
                try:
                    done.append(_checked(table, kind, needed, series_column is not None))
                except DataError as exc:
                    found[kind] = exc
                    break
            # a column of another type than before, where no problem stops the whole read first
            checks = 2 + len(value_columns)  # each column's check: time 0, values 2.., ids 1
            stop, kind_of = min(found, default=checks), [0, *range(2, checks), 1]
            if any(not ok and kind_of[c] < stop for c, ok in enumerate(same)):
                raise WholeTable
            if found:
                if 0 in found:
                    break  # no later block can hold an earlier problem
                continue
            raw = block[time_column]
            if not pd.api.types.is_numeric_dtype(raw):
                offset = offset or _offset(raw.iloc[0])
                if _offset(raw.iloc[0]) != offset:
                    raise WholeTable
            times.append(done[0])
            if series_column:
                local, names = done[1]
                lookup = np.array([index.setdefault(n, len(index)) for n in names], np.int32)
                codes.append(lookup[local])
            for j, numbers in enumerate(done[2:]):
                columns[j].append(numbers)
    except ValueError as exc:  # the parser's own refusals (ParserError is a ValueError)
        raise WholeTable from exc
    if found:
        raise found[min(found)]
    if not first:
        raise WholeTable
    joined = _joined(times)
    all_codes = _joined(codes) if codes else np.zeros(len(joined), dtype=np.int32)
    names = list(index) if series_column else ["0"]
    if len(all_codes) > 1 and (all_codes[1:] < all_codes[:-1]).any():
        stacked = (_joined(parts) for parts in columns)
        grouped = group_rows(all_codes, len(names), joined, stacked, len(value_columns))
    else:  # grouped in the file already (group_rows' order): each column copied into place
        values = np.empty((first, len(value_columns)))
        for j, parts in enumerate(columns):
            _joined(parts, values[:, j])
        ends = np.cumsum(np.bincount(all_codes, minlength=len(names)))
        grouped = (joined, values, np.arange(first), ends)
    table = Table(pd.DataFrame(), str(path), from_file=True)
    try:  # the order of each series' times, checked as split_series checks it
        series_views(table, names, *grouped, series_column)
    except DataError as exc:
        if series_column:
            raise
        raise WholeTable from exc  # its message suggests a series column: the whole table's
    return SeriesArrays(names, *grouped)


def _checked(table: Table, kind: int, needed: list[str], labelled: bool) -> Any:
    """Check ``kind`` of a block (``needed``: its time, value and series columns): 0 its times,
    1 its series ids (``labelled``), 2 on each value column in turn; what the check returns."""
    if kind == 0:
        return _times(table, needed[0])
    if kind == 1:
        return series_codes(table, needed[-1]) if labelled else None
    return _numbers(table, needed[kind - 1])


def _joined(parts: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """One array (``out`` where given) of a column's blocks, as ``np.concatenate`` joins them;
    each block given up once copied, so the blocks and the whole are never in memory together."""
    if out is None:
        out = np.empty(sum(map(len, parts)), dtype=np.result_type(*parts))
    start = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[start : start + len(part)] = part
        start += len(part)
    return out

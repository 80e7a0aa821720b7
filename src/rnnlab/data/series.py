"""Reading and checking tables of time series (a CSV file or a DataFrame) for forecasting.

Every check names what is wrong and where: the file, the column, and the line (CSV files count
lines as an editor does, header = line 1) or the row (DataFrames count rows from 0).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.data.inputs import DEFAULT_MAX_FILE_MB, RAISE_LIMIT, read_input
from rnnlab.data.memory import check_file_fits
from rnnlab.data.normalize import float32_issue, outside_float32
from rnnlab.utils.errors import ConfigError, DataError, first_line
from rnnlab.utils.overrides import as_override

MISSING = ("error", "ffill", "interpolate")
# A column name holding "${" cannot be written in a config, whose resolver would read it as an
# interpolation (and a checkpoint holding one is refused): settings name it with "$\{" instead.
_INTERPOLATION, _SPELLED = "${", "$\\{"


def setting_name(column: object) -> str:
    """How settings (data.target_columns, ...) name a column of the file."""
    return str(column).replace(_INTERPOLATION, _SPELLED)


def file_name(setting: str) -> str:
    """The column of the file that a setting names (the inverse of ``setting_name``)."""
    return setting.replace(_SPELLED, _INTERPOLATION)


@dataclass
class Series:
    """One series: strictly increasing ``times``, ``values`` (time, columns) in original units
    (NaN where missing), and the table position of each step for error messages."""

    name: str
    times: np.ndarray
    values: np.ndarray
    rows: np.ndarray


@dataclass
class Table:
    """A frame plus how to name its rows in messages."""

    frame: pd.DataFrame
    where: str
    from_file: bool
    first: int = 0  # the frame's first row in the file (a block of it: ``series_stream``)

    def row(self, position: int) -> str:
        position += self.first
        return f"line {position + 2}" if self.from_file else f"row {position}"


def read_csv(
    path: str | Path,
    setting: str = "data.file",
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    limit_advice: str = RAISE_LIMIT,
) -> Table:
    """The table in the CSV file at ``path`` (named by ``setting``), read once and within
    ``max_file_mb`` MiB (``inputs.read_input``)."""
    path = Path(path)
    check_file_fits(setting, path, "csv")
    raw = read_input(path, setting, max_file_mb, limit_advice)
    try:
        frame = pd.read_csv(io.BytesIO(raw))
        # the header row as written (pandas renames repeats): its first row, not a decoded copy
        # of the whole file
        first = pd.read_csv(io.BytesIO(raw), header=None, nrows=1, dtype=str, keep_default_na=False)
        header = first.iloc[0].tolist() if len(first) else []
    # ParserError, EmptyDataError and UnicodeDecodeError are ValueErrors
    except ValueError as exc:
        raise DataError(f"cannot read {path} as CSV: {first_line(exc)}") from exc
    # pandas renames a repeated column ('co2' -> 'co2.1') and the first one would win silently
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise DataError(f"{path} has column {twice[0]!r} more than once; rename or drop the copies")
    return Table(frame, str(path), from_file=True)


def _offset(text: object) -> str | None:
    """The UTC offset a time stamp is written with ('+01:00'; 'none' for a time without one),
    or None when it is not a time stamp."""
    try:
        offset = pd.Timestamp(str(text)).utcoffset()
    except (ValueError, TypeError, OverflowError):
        return None
    if offset is None:
        return "none"
    minutes = int(offset.total_seconds() // 60)
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _mixed_offsets(table: Table, column: str, raw: pd.Series) -> str | None:
    """The refusal of a time column whose stamps carry different UTC offsets (or some none),
    naming the first row that differs from the first; None when that is not the problem."""
    first: str | None = None
    for position, text in enumerate(raw):
        offset = _offset(text)
        if offset is None:
            continue
        if first is None:
            first, first_position = offset, position
        elif offset != first:
            return (
                f"{table.where} {table.row(position)}: time {str(text)!r} has UTC offset "
                f"{offset}, {table.row(first_position)} has {first}; a time column must use one "
                f"offset throughout: write every time in one (e.g. UTC) in column {column!r}"
            )
    return None


def _times(table: Table, column: str) -> np.ndarray:
    """The time column as numbers or datetimes. Dates with one UTC offset are read as written
    (the offset dropped: the order and spacing of the times are the same)."""
    raw = table.frame[column]
    missing = np.flatnonzero(raw.isna().to_numpy())
    if len(missing):
        raise DataError(f"{table.where} {table.row(missing[0])}: time column {column!r} is empty")
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw):
        return raw.to_numpy()
    try:
        parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:  # mixed offsets, among others
        problem = _mixed_offsets(table, column, raw)
        raise DataError(
            problem or f"{table.where}: time column {column!r} cannot be read: {first_line(exc)}"
        ) from exc
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{table.where} {table.row(bad[0])}: time column {column!r} holds "
            f"{raw.iloc[bad[0]]!r}, neither a number nor a date"
        )
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    return parsed.to_numpy()


def show_value(value: object) -> str:
    """Text quoted, numbers plain (numpy would print ``np.float64(inf)``)."""
    return repr(value) if isinstance(value, str) else str(value)


def _numbers(table: Table, column: str) -> np.ndarray:
    raw = table.frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero((np.isnan(values) & raw.notna().to_numpy()) | np.isinf(values))
    if len(bad):
        raise DataError(
            f"{table.where} {table.row(bad[0])}: column {column!r} holds "
            f"{show_value(raw.iloc[bad[0]])}, not a finite number"
        )
    unfit = np.flatnonzero(outside_float32(values))
    if len(unfit):
        value = values[unfit[0]]
        raise DataError(
            f"{table.where} {table.row(unfit[0])}: column {column!r} holds {value:g}, "
            f"{float32_issue(value)}; rescale the column"
        )
    return values


def _show(time: object) -> str:
    """A time stamp as a person writes it (numpy prints datetimes to the nanosecond)."""
    return str(pd.Timestamp(time)) if isinstance(time, np.datetime64) else str(time)


def series_codes(table: Table, column: str) -> tuple[np.ndarray, list[str]]:
    """Each row's series (codes into the names, by first appearance); a row without one refused."""
    codes, names = pd.factorize(table.frame[column].astype(str), sort=False)
    if (codes < 0).any():  # an empty id: which series the row belongs to is unknown
        line = table.first + int(np.flatnonzero(codes < 0)[0]) + 2  # the header is line 1
        raise DataError(
            f"{table.where} has no series id at line {line} (column {column!r}); "
            "fill it in, or drop the row"
        )
    return codes, [str(n) for n in names]


def series_key_candidates(table: Table, times: np.ndarray, taken: list[str]) -> list[str]:
    """Columns outside ``taken`` (time, targets, covariates) that could name the series of a
    table whose times repeat: together with the time they are unique, and each of their values
    holds more than one row (a float column such as a price is unique by chance, not a key)."""
    found = []
    for column in table.frame.columns:
        if column in taken:
            continue
        ids = table.frame[column].astype(str).reset_index(drop=True)
        keyed = pd.DataFrame({"id": ids, "time": times})
        if not keyed.duplicated().any() and ids.value_counts().min() > 1:
            found.append(str(column))
    return found


def _series_column_hint(table: Table, times: np.ndarray, taken: list[str]) -> str:
    """What to do about repeated times in a table read as one series: name the columns that
    would split it into series with unique times, or say that none would."""
    holder = "the file" if table.from_file else "the table"
    candidates = series_key_candidates(table, times, taken)
    if candidates:
        settings = " or ".join(as_override("data.series_column", c) for c in candidates)
        return f"; if {holder} holds several series, set {settings}"
    others = [str(c) for c in table.frame.columns if c not in taken]
    if not others:
        return ""  # one series with a repeated time: the rows themselves need fixing
    return (
        f"; if {holder} holds several series, add a column naming each and set "
        f"data.series_column to it (none of {', '.join(others)} is unique together with the time)"
    )


def split_series(
    table: Table,
    time_column: str,
    value_columns: list[str],
    series_column: str | None,
    suggest_series_column: bool = True,
) -> list[Series]:
    """Check columns, types and time order; return the series in order of first appearance.
    ``suggest_series_column``: when the times repeat and no series column is set, the error
    names the columns that could be one (not for data whose series column is already fixed).
    Columns are named as settings name them (``setting_name``)."""
    table.frame = table.frame.rename(columns=setting_name)
    twice = table.frame.columns[table.frame.columns.duplicated()]
    if len(twice):
        raise DataError(
            f"{table.where} has column {str(twice[0])!r} more than once; rename or drop the copies"
        )
    needed = [time_column, *value_columns, *([series_column] if series_column else [])]
    absent = [c for c in needed if c not in table.frame.columns]
    if absent:
        raise DataError(
            f"{table.where} has no column {absent[0]!r} (columns: {list(table.frame.columns)}); "
            "fix the file or data.time_column / target_columns / covariate_columns / series_column"
        )
    if len(table.frame) == 0:
        raise DataError(f"{table.where} has no rows")
    times = _times(table, time_column)
    one = (np.zeros(len(times), dtype=np.int64), ["0"])
    codes, names = series_codes(table, series_column) if series_column else one
    hint = ""
    if series_column is None and suggest_series_column and pd.Series(times).duplicated().any():
        hint = _series_column_hint(table, times, [time_column, *value_columns])
    numbers = (_numbers(table, column) for column in value_columns)
    grouped = group_rows(codes, len(names), times, numbers, len(value_columns))
    return series_views(table, names, *grouped, series_column, hint)


def group_rows(
    codes: np.ndarray, count: int, times: np.ndarray, columns: Iterable[np.ndarray], width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by series (``codes``: each row's, of ``count``): times, values (rows,
    ``width``: ``columns`` taken one at a time), each row's table position, each series' end."""
    order: np.ndarray | None = None
    if len(codes) > 1 and (codes[1:] < codes[:-1]).any():  # not grouped already
        order = np.argsort(codes, kind="stable")
    values = np.empty((len(times), width))
    for j, numbers in enumerate(columns):
        values[:, j] = numbers if order is None else numbers[order]
    rows = np.arange(len(times)) if order is None else order
    if order is not None:
        times = times[order]
    return times, values, rows, np.cumsum(np.bincount(codes, minlength=count))


def series_views(
    table: Table,
    names: list[str],
    times: np.ndarray,
    values: np.ndarray,
    rows: np.ndarray,
    ends: np.ndarray,
    series_column: str | None,
    hint: str = "",
    check: bool = True,
) -> list[Series]:
    """The series of grouped rows (``group_rows``), views of the arrays; ``check``: refuse times
    not strictly increasing within a series (``hint`` ends that message)."""
    series, start = [], 0
    for name, end in zip(names, ends.tolist(), strict=True):
        positions, series_times = rows[start:end], times[start:end]
        bad = np.flatnonzero(~(series_times[1:] > series_times[:-1])) if check else positions[:0]
        if len(bad):
            here, before = int(positions[bad[0] + 1]), int(positions[bad[0]])
            problem = "repeats" if series_times[bad[0] + 1] == series_times[bad[0]] else "precedes"
            label = f" of series {name!r}" if series_column else ""
            raise DataError(
                f"{table.where} {table.row(here)}: time {_show(series_times[bad[0] + 1])}{label} "
                f"{problem} the time on {table.row(before)}; times must be unique and sorted "
                f"(per series){hint}"
            )
        series.append(Series(name, series_times, values[start:end], positions))
        start = end
    return series


def fill_missing(
    series: Series, method: str, parts: list[tuple[int, int]], table: Table, columns: list[str]
) -> np.ndarray:
    """Values with NaNs filled by ``method``; 'error' names the first missing cells instead.

    ``ffill`` only looks back, so it never moves information across a split boundary.
    ``interpolate`` is linear within each chronological part (train, val, test) separately, so
    no part borrows values from a later one. These filled values serve as targets and for the
    training statistics; a window's *inputs* are filled again from values before its own
    origin only (``forecast.WindowDataset``).
    """
    if method not in MISSING:
        raise ConfigError(f"unknown data.missing {method!r}; use one of {', '.join(MISSING)}")
    values = series.values
    holes = np.argwhere(np.isnan(values))
    if not len(holes):
        return values
    if method == "error":
        cells = ", ".join(
            f"{table.row(series.rows[r])} column {columns[c]!r}" for r, c in holes[:3]
        )
        more = f" and {len(holes) - 3} more" if len(holes) > 3 else ""
        raise DataError(
            f"{table.where} has missing values at {cells}{more}; fill them or set "
            "data.missing=ffill or data.missing=interpolate"
        )
    frame = pd.DataFrame(values)
    if method == "ffill":
        filled = frame.ffill()
    else:
        filled = pd.concat(
            [frame.iloc[a:b].interpolate(limit_direction="both") for a, b in parts if b > a]
        ).reindex(frame.index)
    leading = np.argwhere(np.isnan(filled.to_numpy()))
    if len(leading):
        r, c = leading[0]
        raise DataError(
            f"{table.where} {table.row(series.rows[r])} column {columns[c]!r}: missing with no "
            "earlier value to fill from; trim the series' leading gaps"
        )
    return filled.to_numpy()

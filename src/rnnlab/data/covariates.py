"""Forecasting inputs beyond the targets and past covariates: future covariates (file columns
known over the forecast horizon), static columns (one value per series) and calendar features
generated from the time column.

A model's input columns, in order: the targets, the past covariates, the future covariates, the
static columns (a numeric one as one column, any other one-hot over the training series'
categories), a sin/cos pair per calendar feature, and, when any column is known over the horizon
(future covariates or calendar), ``is_future``: 0 over the history, 1 over the horizon, where a
window reads the known columns at the forecast times (``windows.WindowDataset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rnnlab.data.normalize import Normalizer
from rnnlab.data.series import Series, Table, show_value
from rnnlab.utils.errors import ConfigError, DataError

# each feature's position within its cycle and the cycle's length
CALENDAR = ("month", "weekday", "day_of_month", "day_of_year", "week_of_year", "hour")


def check_calendar(names: Sequence[str]) -> list[str]:
    """``names`` as a list, refusing an unknown feature or one named twice."""
    names = [str(n) for n in names]
    for name in names:
        if name not in CALENDAR:
            raise ConfigError(
                f"unknown data.calendar feature {name!r}; choose from {', '.join(CALENDAR)}"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"data.calendar names {twice[0]!r} twice; name each feature once")
    return names


def _cycle(index: pd.DatetimeIndex, name: str) -> tuple[np.ndarray, np.ndarray | float]:
    """(position, length) of each time in the cycle of calendar feature ``name``, from 0."""
    if name == "month":
        return np.asarray(index.month - 1), 12.0
    if name == "weekday":
        return np.asarray(index.weekday), 7.0
    if name == "day_of_month":
        return np.asarray(index.day - 1), np.asarray(index.days_in_month)
    if name == "day_of_year":
        return np.asarray(index.dayofyear - 1), 365 + np.asarray(index.is_leap_year)
    if name == "week_of_year":  # ISO weeks: 52 or 53 in a year, the last holding 28 December
        iso = index.isocalendar()
        ends = pd.to_datetime(pd.DataFrame({"year": iso["year"], "month": 12, "day": 28}))
        return iso["week"].to_numpy(float) - 1, ends.dt.isocalendar()["week"].to_numpy(float)
    return np.asarray(index.hour + index.minute / 60), 24.0


def calendar_features(times: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(time, 2 * len(names)): the sine and cosine of each feature's angle in its cycle, so the
    end of a cycle lies next to its start (December next to January)."""
    index = pd.DatetimeIndex(times)
    features = np.empty((len(index), 2 * len(names)))
    for j, name in enumerate(names):
        position, length = _cycle(index, name)
        angle = 2 * np.pi * position / length
        features[:, 2 * j], features[:, 2 * j + 1] = np.sin(angle), np.cos(angle)
    return features


def check_named_once(columns: Sequence[str | None]) -> None:
    """Refuse a column named by two data settings (e.g. a target and a covariate)."""
    twice = sorted({c for c in columns if c is not None and columns.count(c) > 1})
    if twice:
        raise ConfigError(f"column {twice[0]!r} is named in two data settings; name it once")


def check_dates(times: np.ndarray, column: str, names: Sequence[str], where: str) -> None:
    if names and not np.issubdtype(times.dtype, np.datetime64):
        raise ConfigError(
            f"data.calendar={list(names)} needs dates, but {where} time column {column!r} "
            "holds numbers; set data.calendar=[] or write the times as dates"
        )


def static_values(table: Table, series: list[Series], columns: Sequence[str]) -> list[list[object]]:
    """Each series' value of each static column (call before ``table.frame`` is dropped),
    refusing an empty one and one that changes within a series."""
    absent = [c for c in columns if c not in table.frame.columns]
    if absent:
        raise DataError(
            f"{table.where} has no column {absent[0]!r} (columns: {list(table.frame.columns)}); "
            "fix the file or data.static_columns"
        )
    found: list[list[object]] = [[] for _ in series]
    for column in columns:
        raw = table.frame[column]
        for i, s in enumerate(series):
            values = raw.iloc[s.rows]
            empty = np.flatnonzero(values.isna().to_numpy())
            if len(empty):
                raise DataError(
                    f"{table.where} {table.row(s.rows[empty[0]])}: static column {column!r} is "
                    f"empty; give every row of series {s.name!r} its value"
                )
            other = np.flatnonzero((values != values.iloc[0]).to_numpy())
            if len(other):
                raise DataError(
                    f"{table.where} series {s.name!r}: static column {column!r} holds "
                    f"{show_value(values.iloc[0])} on {table.row(s.rows[0])} but "
                    f"{show_value(values.iloc[other[0]])} on {table.row(s.rows[other[0]])}; give "
                    "each series one value"
                )
            found[i].append(values.iloc[0])
    return found


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


@dataclass
class KnownInputs:
    """The input columns after the file's ``numeric`` ones (of which ``future`` maps the future
    covariates' indices to their names): static, calendar and ``is_future``. ``categories``
    maps each non-numeric static column to the training series' values, in order (its one-hot
    columns); it travels in the checkpoint."""

    numeric: int
    future: dict[int, str]
    static_columns: list[str]
    calendar: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, numeric: list[str], future: list[str], static: Sequence[str], calendar: Sequence[str]
    ) -> KnownInputs:
        """The inputs after the file's ``numeric`` input columns, which end with the ``future``
        covariates."""
        first = len(numeric) - len(future)
        indices = {first + j: c for j, c in enumerate(future)}
        return cls(len(numeric), indices, [str(c) for c in static], check_calendar(calendar))

    def state_dict(self) -> dict[str, dict[str, list[str]]]:
        """The fitted categories, for the checkpoint (none without static columns: a model
        without them writes what it wrote before they existed)."""
        if not self.static_columns:
            return {}
        return {"static_categories": {k: list(v) for k, v in self.categories.items()}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        categories = state.get("static_categories", {})
        assert isinstance(categories, dict)
        self.categories = {str(k): [str(c) for c in v] for k, v in categories.items()}

    @property
    def has_future(self) -> bool:
        """Whether windows read the horizon too (future covariates or calendar)."""
        return bool(self.future or self.calendar)

    @property
    def static(self) -> slice:
        """The static input columns."""
        return slice(self.numeric, self.numeric + self.static_width)

    @property
    def columns(self) -> tuple[int, ...]:
        """The columns known over the horizon: the future covariates, the calendar's."""
        first = self.static.stop
        return (*self.future, *range(first, first + 2 * len(self.calendar)))

    def fit(self, values: list[list[object]]) -> None:
        """The categories of the non-numeric static columns, from the training series."""
        self.categories = {}
        for j, column in enumerate(self.static_columns):
            column_values = [v[j] for v in values]
            if any(_number(v) is None for v in column_values):
                self.categories[column] = sorted({str(v) for v in column_values})

    @property
    def static_width(self) -> int:
        return sum(len(self.categories.get(c, [None])) for c in self.static_columns)

    @property
    def width(self) -> int:
        return self.static_width + 2 * len(self.calendar) + int(self.has_future)

    def rows(
        self, table: Table, series: list[Series], places: list[str], time_column: str, fit: bool
    ) -> list[np.ndarray]:
        """Each series' static input columns (named by ``places`` in messages), the categories
        fitted on them first where ``fit`` (training); the times checked to be dates where
        calendar features are asked for."""
        check_dates(series[0].times, time_column, self.calendar, table.where)
        values = static_values(table, series, self.static_columns)
        if fit:
            self.fit(values)
        return [self.static_row(v, p) for v, p in zip(values, places, strict=True)]

    def share_static(self, normalizers: list[Normalizer], common: Normalizer) -> None:
        """Give per-series ``normalizers`` the static columns' statistics of ``common`` (fitted
        on every series): a static column is constant within a series, so its own statistics
        would centre it to 0 and erase it."""
        for normalizer in normalizers:
            assert normalizer.shift is not None and normalizer.scale is not None
            assert common.shift is not None and common.scale is not None
            normalizer.shift[self.static] = common.shift[self.static]
            normalizer.scale[self.static] = common.scale[self.static]

    def static_row(self, values: list[object], where: str) -> np.ndarray:
        """The static input columns of one series (``where`` names it in messages)."""
        row: list[float] = []
        for column, value in zip(self.static_columns, values, strict=True):
            if column not in self.categories:
                number = _number(value)
                if number is None:
                    raise DataError(
                        f"{where}: static column {column!r} holds {show_value(value)}, but the "
                        "model was trained on numbers in it; give a number"
                    )
                row.append(number)
                continue
            known = self.categories[column]
            if str(value) not in known:
                raise DataError(
                    f"{where}: static column {column!r} holds {str(value)!r}, a category the "
                    f"model never saw (it knows {known}); forecast it with a model trained on it"
                )
            row.extend(float(str(value) == c) for c in known)
        return np.array(row)

    def block(self, static: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(time, width): the static row at every step, the calendar features of ``times`` and
        ``is_future`` at 0 (the history's value; windows set it over the horizon)."""
        n = len(times)
        parts = [np.broadcast_to(static, (n, len(static)))]
        if self.calendar:
            parts.append(calendar_features(times, self.calendar))
        parts.append(np.zeros((n, int(self.has_future))))
        return np.hstack(parts)


def check_complete(series: Series, end: int, table: Table, columns: dict[int, str]) -> None:
    """Refuse a missing value of a future covariate (``columns``: value index -> name) in the
    first ``end`` steps of ``series``."""
    for j, column in columns.items():
        empty = np.flatnonzero(np.isnan(series.values[:end, j]))
        if len(empty):
            raise DataError(
                f"{table.where} {table.row(series.rows[empty[0]])}: future covariate {column!r} "
                "is empty; give it a value on every row (it is known in advance)"
            )

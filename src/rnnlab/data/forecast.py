"""DataModule for forecasting: windows of ``lookback`` steps -> the next ``horizon`` targets,
cut from one or many series, split chronologically so that nothing leaks.

Each series is split in time into train | val | test parts (by fractions of its length or by
dates). A window belongs to the part holding all of its targets; its inputs may reach back into
earlier parts (history), never forward. Normalisation statistics (and the MASE scale) come from
the train parts only. Batches carry targets in original units, the statistics to move between
scales, and the naive and seasonal-naive forecasts of the same windows, so the model reports
every metric, its own and the baselines', in original units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from rnnlab.batch import Batch
from rnnlab.data.base import TaskDataModule
from rnnlab.data.cache import drop_pages, usable_folder
from rnnlab.data.covariates import (
    KnownInputs,
    check_complete,
    check_named_once,
)
from rnnlab.data.forecast_input import read_prediction_input
from rnnlab.data.forecast_output import prediction_table
from rnnlab.data.inputs import DEFAULT_MAX_FILE_MB, check_max_file_mb
from rnnlab.data.normalize import Normalizer
from rnnlab.data.residual_quantiles import residual_quantiles
from rnnlab.data.series import Series, Table, fill_missing, read_csv, split_series
from rnnlab.data.series_cache import cached_series
from rnnlab.data.sources import SOURCES, STEPS, UNITS, load_source
from rnnlab.data.windows import (
    BASELINES,
    SeriesData,
    WindowDataset,
    WindowIndex,
    WindowSpec,
    check_split_settings,
    check_window_settings,
    collate_windows,
    first_step_at,
    mase_scale,
    origin_array,
    warn_undefined_mase,
)

# defined here before rnnlab.data.windows held them: still importable from here
from rnnlab.data.windows import causal_fill as causal_fill
from rnnlab.data.windows import seasonal_naive as seasonal_naive
from rnnlab.data.windows import window_origins as window_origins
from rnnlab.utils.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


class ForecastDataModule(TaskDataModule):
    """Series from ``file`` (CSV), ``source`` (a shipped series) or ``frame`` (a DataFrame, from
    Python) with a time column, target column(s), optional covariates (inputs only) and an
    optional series-id column. Splits by ``val_fraction``/``test_fraction`` of each series, or by
    ``val_start``/``test_start`` dates (or numbers, matching the time column). Settings name a
    column holding ``${`` with ``$\\{`` (``series.setting_name``).
    """

    # the cache is keyed by the file's content: members may keep theirs in different folders
    split_settings = TaskDataModule.split_settings | {"cache_dir"}

    def __init__(
        self,
        file: str | None = None,
        source: str | None = None,
        frame: pd.DataFrame | None = None,
        time_column: str = "time",
        target_columns: list[str] | tuple[str, ...] = ("value",),
        covariate_columns: list[str] | tuple[str, ...] = (),
        # lists, never changed here: a resumed run's [] then equals a setting added since
        # (checkpoint.resume), where () would not
        future_covariate_columns: list[str] | tuple[str, ...] = [],  # noqa: B006
        static_columns: list[str] | tuple[str, ...] = [],  # noqa: B006
        calendar: list[str] | tuple[str, ...] = [],  # noqa: B006
        series_column: str | None = None,
        lookback: int = 52,
        horizon: int = 13,
        stride: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        val_start: str | float | None = None,
        test_start: str | float | None = None,
        normalize: str = "zscore",
        per_series: bool = False,
        missing: str = "error",
        season_length: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        max_file_mb: float = DEFAULT_MAX_FILE_MB,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.max_file_mb = check_max_file_mb(max_file_mb)
        if file is not None and source is not None:
            raise ConfigError(
                f"data.file and data.source={source} are both set; to forecast your own CSV use "
                "experiment=forecast_csv data.file=<your.csv>, or add data.source=null"
            )
        if sum(x is not None for x in (file, source, frame)) != 1:
            raise ConfigError(
                "set exactly one of data.file=<your.csv> (experiment=forecast_csv) and "
                f"data.source (shipped: {', '.join(SOURCES)})"
            )
        check_window_settings(lookback, horizon, stride, season_length)
        check_split_settings(val_start, test_start, val_fraction, test_fraction)
        if not list(target_columns):
            raise ConfigError("data.target_columns is empty; name at least one target column")
        self.file, self.source, self.frame = file, source, frame
        self.cache_dir, self.cache_state = cache_dir, "off"  # 'built' or 'reused' with the cache
        self.time_column = time_column
        self.target_columns = [str(c) for c in target_columns]
        self.covariate_columns = [str(c) for c in covariate_columns]
        self.future_covariate_columns = [str(c) for c in future_covariate_columns]
        check_named_once([*self.columns, *map(str, static_columns), time_column, series_column])
        self.known = KnownInputs.of(
            self.columns, self.future_covariate_columns, static_columns, calendar
        )
        self.series_column = series_column
        self.lookback, self.horizon, self.stride = int(lookback), int(horizon), int(stride)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.val_start, self.test_start = val_start, test_start
        self.method = normalize
        Normalizer(normalize)  # validates the name now, not at the first fit
        self.per_series = per_series
        self.missing = missing
        self.season_length = season_length

        self.series_names: list[str] = []
        self.normalizers: list[Normalizer] = []  # fitted on the train parts: one, or per series
        self.series: list[SeriesData] = []
        self.windows: dict[str, WindowIndex] = {}
        # what setup_predict read, apart from the training data
        self.predict_series: list[Series] = []
        self.predict_data: list[SeriesData] = []

    # --- columns and tables ------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The file's numeric input columns: the targets first (the model reads the last target
        from them), then the past and the future covariates; the inputs of ``known`` follow."""
        return self.target_columns + self.covariate_columns + self.future_covariate_columns

    @property
    def num_targets(self) -> int:
        return len(self.target_columns)

    def display_name(self) -> str:
        if self.file is not None:
            return Path(self.file).name
        return f"{self.source} series" if self.source is not None else "data frame"

    def target_unit(self, column: str) -> str | None:
        """The unit of a target column, for axis labels; known for shipped series only."""
        return UNITS.get(self.source or "", {}).get(column)

    def step_unit(self) -> str | None:
        """What one time step is (e.g. weeks), for axis labels; known for shipped series only."""
        return STEPS.get(self.source or "")

    def _table(self) -> Table:
        if self.file is not None:
            return read_csv(self.file, "data.file", self.max_file_mb)
        if self.source is not None:
            return Table(load_source(self.source), f"source {self.source!r}", from_file=False)
        return Table(self.frame, "data frame", from_file=False)

    def _training_series(self) -> tuple[Table, list[Series]]:
        """The training data's series: a file's from the disk cache (``series_cache``) where
        there is one and the file has no static columns, else read as a table."""
        folder = usable_folder(self.cache_dir) if self.file is not None else None
        if folder is not None and not self.known.static_columns:
            columns = (self.time_column, self.columns, self.series_column)
            found = cached_series(folder, str(self.file), *columns, self.max_file_mb)
            if found is not None:
                self.cache_state = "built" if found[2] else "reused"
                return found[0], found[1]
        table = self._table()
        return table, self._series(table)

    def _series(self, table: Table, training: bool = True) -> list[Series]:
        # prediction input must match the checkpoint's series column: no other one to suggest
        return split_series(table, self.time_column, self.columns, self.series_column, training)

    # --- splitting ---------------------------------------------------------------------------
    def parts(self, series: Series) -> tuple[int, int, int]:
        """(train_end, val_end, length): train = [0, train_end), val = [train_end, val_end),
        test = [val_end, length)."""
        n = len(series.times)
        if self.val_start is not None:
            train_end = first_step_at(series.times, self.val_start)
            val_end = max(train_end, first_step_at(series.times, self.test_start))  # type: ignore[arg-type]
        else:
            n_test, n_val = round(n * self.test_fraction), round(n * self.val_fraction)
            train_end, val_end = n - n_val - n_test, n - n_test
        return train_end, val_end, n

    def _where(self, series: Series, table: Table) -> str:
        return f"{table.where} series {series.name!r}" if self.series_column else table.where

    # --- setup -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if not self.predict_data:
                raise ConfigError("no prediction input: set input=<file.csv> for rnnlab.predict")
            return
        if self.windows:
            return
        table, all_series = self._training_series()
        restored = bool(self.normalizers)
        if restored and self.per_series and [s.name for s in all_series] != self.series_names:
            raise DataError(f"{table.where}: its series differ from those in the checkpoint")
        self.series_names = [s.name for s in all_series]
        places = [self._where(series, table) for series in all_series]
        static = self.known.rows(table, all_series, places, self.time_column, fit=not restored)
        table.frame = table.frame.iloc[:0]  # read: messages need only its name and row numbers
        origins: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
        raws, observed, train_parts = [], [], []
        for series, static_row in zip(all_series, static, strict=True):
            train_end, val_end, n = self.parts(series)
            if n < self.lookback + self.horizon:
                raise DataError(
                    f"{self._where(series, table)} has {n} time steps, fewer than lookback + "
                    f"horizon = {self.lookback + self.horizon}; lower data.lookback/horizon"
                )
            bounds = [(0, train_end), (train_end, val_end), (val_end, n)]
            check_complete(series, n, table, self.known.future)
            values = fill_missing(series, self.missing, bounds, table, self.columns)
            extra = self.known.block(static_row, series.times)
            raws.append(torch.tensor(np.hstack([values, extra]), dtype=torch.float32))
            train_parts.append(raws[-1][:train_end])
            # the gaps themselves, for windows to fill from their own past (WindowDataset)
            gaps = self.missing == "interpolate" and bool(np.isnan(series.values).any())
            # a copy: series.values is a view of every series' values, freed after set-up
            observed.append(np.hstack([series.values, extra]) if gaps else None)
            for split, (start, end) in zip(SPLITS, bounds, strict=True):
                origins[split].append(
                    origin_array(start, end, self.lookback, self.horizon, self.stride)
                )
        drop_pages(all_series[0].values)  # a cached file's, mapped: copied into raws above
        self.windows = {split: WindowIndex.of(origins.pop(split)) for split in SPLITS}
        for split in SPLITS:
            if not self.windows[split]:
                raise DataError(
                    f"{table.where}: no {split} window fits; each needs lookback "
                    f"({self.lookback}) steps of history and horizon ({self.horizon}) target "
                    f"steps inside the {split} part; lower lookback/horizon or change the split"
                )
        if not restored:
            self._fit_normalizers(train_parts)
        scales = [mase_scale(p[:, : self.num_targets], self.season_length) for p in train_parts]
        warn_undefined_mase(scales, places, self.target_columns, self.season_length)
        # the seasonal-naive baseline's intervals (scored beside a probabilistic model's)
        self.residual_table = residual_quantiles(train_parts, scales, self.spec)
        self.series = [
            SeriesData(raw, self.normalizer(i), scales[i], observed[i])
            for i, raw in enumerate(raws)
        ]

    def _fit_normalizers(self, train_parts: list[torch.Tensor]) -> None:
        self.normalizers = [Normalizer(self.method).fit(train_parts)]
        if self.per_series:
            common = self.normalizers[0]
            self.normalizers = [Normalizer(self.method).fit([p]) for p in train_parts]
            self.known.share_static(self.normalizers, common)

    def normalizer(self, series: int) -> Normalizer:
        return self.normalizers[series if self.per_series else 0]

    def setup_predict(self, path: str) -> None:
        """Read ``path``: recent history of each series in the training format (and the rows
        after it that carry the future-known inputs); the forecast starts after each series'
        last target value. Kept apart from the training data."""
        self.predict_series, self.predict_data = read_prediction_input(self, path)

    # --- model settings, loaders -------------------------------------------------------------
    def model_settings(self) -> dict[str, Any]:
        return {
            "encoder": {"input_size": len(self.columns) + self.known.width},
            "horizon": self.horizon,
            "num_targets": self.num_targets,
        }

    def baseline_names(self) -> tuple[str, ...]:
        return BASELINES

    def scaled_metrics(self) -> tuple[str, ...]:
        return ("mase",)

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec(
            self.lookback, self.horizon, self.num_targets, self.season_length, self.known.columns
        )

    def dataset(self, split: str) -> WindowDataset:
        if split == "predict":
            windows = [(i, len(s.times)) for i, s in enumerate(self.predict_series)]
            return WindowDataset(self.spec, self.predict_data, windows, with_targets=False)
        return WindowDataset(self.spec, self.series, self.windows[split])

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        batch = collate_windows(items)
        batch.future_rows = self.horizon if self.known.has_future else 0
        if batch.forecast is not None:
            batch.forecast.residual_quantiles = getattr(self, "residual_table", None)
        return batch

    def predict_dataloader(self) -> DataLoader:
        return self.split_loader("predict", shuffle=False)

    # --- predictions as a table --------------------------------------------------------------
    def prediction_frame(self, outputs: list[dict[str, torch.Tensor]]) -> pd.DataFrame:
        """One row per series and future step (``forecast_output.prediction_table``)."""
        return prediction_table(
            outputs,
            self.predict_series,
            self.horizon,
            self.time_column,
            self.target_columns,
            self.series_column,
        )

    # --- checkpoint state (plain types and tensors: loads with weights_only=True) -----------
    def state_dict(self) -> dict[str, Any]:
        return {
            "series": list(self.series_names),
            "normalizers": [n.state_dict() for n in self.normalizers],
            **self.known.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.series_names = list(state_dict["series"])
        self.known.load_state_dict(state_dict)
        self.normalizers = []
        for state in state_dict["normalizers"]:
            normalizer = Normalizer(self.method)
            normalizer.load_state_dict(state)
            self.normalizers.append(normalizer)

"""Data kept in arrays rather than Python objects: forecasting windows as index arrays, a table's
series as slices of one array, .ts sequences packed in one values array with offsets (checked
and converted in one pass, normalised when read), each giving what the per-object forms gave."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data import sequences as sequences_module
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.data.normalize import MAX_ABS_VALUE
from rnnlab.data.ragged import PackedSequences, offsets_of
from rnnlab.data.sequences import check_sequences
from rnnlab.data.series import Table, split_series
from rnnlab.data.ucr import load_archive, load_ts_file
from rnnlab.data.windows import WindowDataset, WindowIndex, origin_array, window_origins
from rnnlab.utils.errors import DataError
from tests.conftest import write_ts

# --- forecasting windows ---------------------------------------------------------------------


@given(
    start=st.integers(0, 30),
    size=st.integers(0, 40),
    lookback=st.integers(1, 10),
    horizon=st.integers(1, 10),
    stride=st.integers(1, 7),
)
def test_origin_arrays_are_the_origins(start, size, lookback, horizon, stride):
    end = start + size
    last, first = end - horizon, max(start, lookback)
    expected = list(range(last, first - 1, -stride))[::-1]
    assert origin_array(start, end, lookback, horizon, stride).tolist() == expected
    assert window_origins(start, end, lookback, horizon, stride) == expected


def test_a_window_index_reads_as_tuples_of_python_ints_in_12_bytes_a_window():
    index = WindowIndex.of([np.array([4, 6]), np.array([], dtype=np.int64), np.array([9])])
    assert index == [(0, 4), (0, 6), (2, 9)] and index != [(0, 4)]
    assert len(index) == 3 and index[-1] == (2, 9) and index[1:] == [(0, 6), (2, 9)]
    assert all(type(v) is int for window in index for v in window)
    assert index.series.itemsize + index.origins.itemsize == 12


def _frame(series: int = 3, steps: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.tile([f"s{i}" for i in range(series)], steps),  # series interleaved
            "time": np.repeat(np.arange(steps), series),
            "value": rng.normal(size=series * steps).round(3),
        }
    )


def test_series_are_slices_of_one_array_in_order_of_first_appearance():
    frame = _frame()
    series = split_series(Table(frame, "frame", False), "time", ["value"], "id")
    assert [s.name for s in series] == ["s0", "s1", "s2"]
    assert series[0].values.base is series[2].values.base is not None
    for s in series:
        rows = frame[frame["id"] == s.name]
        assert s.values[:, 0].tolist() == rows["value"].tolist()
        assert s.rows.tolist() == rows.index.tolist()
        assert s.times.tolist() == rows["time"].tolist()


def test_forecast_windows_are_index_arrays_and_give_the_same_items():
    data = ForecastDataModule(
        frame=_frame(), series_column="id", lookback=5, horizon=3, season_length=2
    )
    data.setup("fit")
    windows = data.windows["train"]
    assert isinstance(windows, WindowIndex) and len(windows) == 3 * 21
    as_tuples = WindowDataset(data.spec, data.series, list(windows))
    for i in (0, 17, len(windows) - 1):
        ours, theirs = data.dataset("train")[i], as_tuples[i]
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, theirs[key]), key
            else:
                assert value == theirs[key] and type(value) is type(theirs[key]), key


# --- packed sequences --------------------------------------------------------------------------


def _sequences(lengths: list[int], channels: int, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.normal(size=(n, channels))) for n in lengths]


def _packed(sequences: list[torch.Tensor]) -> PackedSequences:
    values = torch.cat(sequences) if sequences else torch.zeros(0, 2, dtype=torch.float64)
    return PackedSequences(values, offsets_of(np.array([len(s) for s in sequences])))


FLAWS = {
    "nan": float("nan"),
    "inf": float("inf"),
    "huge": MAX_ABS_VALUE * 2,
    "tiny": 1e-300,
}


@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=8),
    flaws=st.lists(
        st.tuples(st.sampled_from(sorted(FLAWS)), st.integers(0, 100), st.integers(0, 1)),
        max_size=3,
    ),
    seed=st.integers(0, 9),
)
@settings(max_examples=150, deadline=None)
def test_packed_sequences_are_checked_and_converted_as_a_list_of_them_is(lengths, flaws, seed):
    sequences = _sequences(lengths, 2, seed)
    for kind, where, channel in flaws:
        steps = [(i, t) for i, s in enumerate(sequences) for t in range(len(s))]
        if steps:
            i, t = steps[where % len(steps)]
            sequences[i][t, channel] = FLAWS[kind]
    packed = _packed([s.clone() for s in sequences])
    try:
        expected = check_sequences(sequences, "data")
    except DataError as exc:
        with (
            pytest.raises(DataError) as caught,
            mock.patch.object(sequences_module, "_CHECK_ROWS", 3),
        ):
            check_sequences(packed, "data")
        assert str(caught.value) == str(exc)
        return
    with mock.patch.object(sequences_module, "_CHECK_ROWS", 3):  # checked 3 rows at a time
        got = check_sequences(packed, "data")
    assert isinstance(got, PackedSequences) and got.values.dtype == torch.float32
    assert len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_a_ts_file_is_read_into_one_array_of_samples(tmp_path):
    path = write_ts(tmp_path / "d.ts", ["1,2,3:a", "4,5:b", "6,7,8,9:a"])
    sequences, labels = load_ts_file(path)
    assert isinstance(sequences, PackedSequences) and labels.tolist() == ["a", "b", "a"]
    assert sequences.offsets.tolist() == [0, 3, 5, 9]
    assert [s[:, 0].tolist() for s in sequences] == [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    shipped, _ = load_archive("JapaneseVowels", "train")
    assert len(shipped) == 270 and shipped.values.shape == (int(shipped.lengths.sum()), 12)

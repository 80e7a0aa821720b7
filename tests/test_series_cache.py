"""Forecasting CSVs read a block of rows at a time (``data.series_stream``) and cached
(``data.series_cache``): the arrays and every refusal are those of the whole-table read
whatever the block size; a second read reuses the entry, a changed file or a damaged entry
builds a new one; the DataModule's windows are the same with the cache as without, the shipped
series' included."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.data import cache
from rnnlab.data.export import export
from rnnlab.data.forecast import ForecastDataModule
from rnnlab.data.inputs import RAISE_LIMIT
from rnnlab.data.series import read_csv, split_series
from rnnlab.data.series_cache import SERIES_READER, cached_series
from rnnlab.data.series_stream import WholeTable, read_series_arrays
from rnnlab.utils.errors import DataError

# three series, their rows interleaved and one series out of order in the file
ROWS = [
    "b,2020-01-06,2.5,1",
    "a,2020-01-06,1.0,0",
    "a,2020-01-13,,0",
    "c,2020-01-06,7,3",
    "b,2020-01-13,3.5,1",
    "a,2020-01-20,1.25,0",
    "c,2020-01-13,8,4",
    "b,2020-01-20,4.5,2",
    "a,2020-01-27,1.5,1",
]
HEADER = "id,date,sales,price"


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _whole(path: Path, series_column: str | None = "id", values=("sales", "price")):
    return split_series(read_csv(path), "date", list(values), series_column)


def _blocks(path: Path, chunk_rows: int, series_column: str | None = "id", values=None):
    arrays = read_series_arrays(
        path, "date", list(values or ("sales", "price")), series_column, chunk_rows
    )
    start, found = 0, []
    for name, end in zip(arrays.names, arrays.ends.tolist(), strict=True):
        found.append((name, arrays.times[start:end], arrays.values[start:end]))
        found[-1] += (arrays.rows[start:end],)
        start = end
    return found


def _same(whole, blocks) -> None:
    assert [s.name for s in whole] == [b[0] for b in blocks]
    for s, (_, times, values, rows) in zip(whole, blocks, strict=True):
        assert times.dtype == s.times.dtype and np.array_equal(times, s.times)
        assert values.dtype == s.values.dtype
        assert np.array_equal(values, s.values, equal_nan=True)
        assert np.array_equal(rows, s.rows)


@pytest.mark.parametrize("chunk_rows", [1, 2, 4, 100])
def test_blocks_give_the_whole_tables_series(tmp_path, chunk_rows):
    path = _write(tmp_path / "s.csv", ROWS)
    _same(_whole(path), _blocks(path, chunk_rows))
    grouped = _write(tmp_path / "g.csv", sorted(ROWS))  # already grouped: no sort needed
    _same(_whole(grouped), _blocks(grouped, chunk_rows))
    # a field more than the header on every line: pandas reads the first as the index
    indexed = _write(tmp_path / "i.csv", [f"{k},{row}" for k, row in enumerate(ROWS)])
    _same(_whole(indexed), _blocks(indexed, max(chunk_rows, 2)))
    # numeric times: the second block starts with a number that also reads as a year
    years = _write(tmp_path / "y.csv", ["a,2000,1,1", "a,2001,2,2", "b,5,3,3", "b,6,4,4"])
    _same(_whole(years), _blocks(years, 2))
    # columns named as pandas' missing values: different names, read as written
    named = _write(tmp_path / "na.csv", [f"{row},x," for row in ROWS], f"{HEADER},NA,")
    _same(_whole(named), _blocks(named, chunk_rows))
    numbers = _write(tmp_path / "n.csv", ["1,1", "2,2.5", "3,", "4,1e30"], "date,sales")
    _same(_whole(numbers, None, ["sales"]), _blocks(numbers, 1, None, ["sales"]))


@pytest.mark.parametrize(
    "rows",
    [
        # a value that is not a number, in the third block
        [*ROWS[:5], "b,2020-01-27,lots,1"],
        # a value error early, a time error later: the time column is checked first
        ["a,2020-01-06,x,0", *ROWS[1:6], "c,someday,1,1"],
        # a value error in the second column early, one in the first column later
        ["a,2020-01-06,1,y", *ROWS[1:6], "c,2020-02-03,inf,1"],
        # an empty time, an empty series id
        [*ROWS[:3], "c,,1,1"],
        [*ROWS[:3], ",2020-02-03,1,1"],
        # a time that repeats within a series whose rows lie in different blocks
        [*ROWS, "b,2020-01-13,9,9"],
        # a value float32 training cannot hold, a time with another offset within a block
        [*ROWS[:4], "a,2020-03-02,1e39,1"],
        ["a,2020-01-06T00:00+01:00,1,1", "a,2020-01-13T00:00+02:00,1,1"],
    ],
)
def test_a_refusal_in_any_block_is_the_whole_tables(tmp_path, rows):
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as whole:
        _whole(path)
    with pytest.raises(DataError) as blocks:
        _blocks(path, 2)
    assert str(blocks.value) == str(whole.value)


@pytest.mark.parametrize(
    "rows, header",
    [
        (["a,1,1,1", "a,2,1,1", "a,2020-01-06,1,1"], HEADER),  # times: numbers, then dates
        (["1,2020-01-06,1,1", "2,2020-01-13,1,1", "x1,2020-01-20,1,1"], HEADER),  # ids
        (
            [
                "a,2020-01-06T00:00+01:00,1,1",
                "a,2020-01-13T00:00+01:00,1,1",
                "a,2020-01-20T00:00+02:00,1,1",
            ],
            HEADER,
        ),
        (["a,2020-01-06,1,1,2"], "id,date,sales,price,sales"),  # a column twice
        (["a,2020-01-06,1,1,x,y"], "id,date,sales,price,,"),  # two columns without a name
        (["1,2020-01-06,1,1", "2,2020-01-13,1,1", "3.5,2020-01-20,1,1"], HEADER),  # ids
        # a value refused first, then ids of another type: the ids are checked before values
        (["1,2020-01-06,x,1", "2,2020-01-13,1,1", "x1,2020-01-20,1,1"], HEADER),
        (["a,2020-01-06,1"], "id,date,sales"),  # no column price
        ([], HEADER),  # no rows
        (["a,2020-01-06,1,1", "a,2020-01-13,1,1,9", "a,2020-01-20,1,1"], HEADER),  # a 5th field
    ],
)
def test_what_depends_on_the_whole_table_is_left_to_it(tmp_path, rows, header):
    path = _write(tmp_path / "t.csv", rows, header)
    with pytest.raises(WholeTable):
        _blocks(path, 2)


def _module(path: Path, cache_dir: Path | None, **settings) -> ForecastDataModule:
    options = dict(
        time_column="date", target_columns=["sales"], covariate_columns=["price"],
        series_column="id", lookback=2, horizon=1, val_fraction=0.25, test_fraction=0.25,
        season_length=1, missing="interpolate",
    )  # fmt: skip
    options.update(settings)
    folder = str(cache_dir) if cache_dir else None
    module = ForecastDataModule(file=str(path), cache_dir=folder, **options)
    module.setup("fit")
    return module


def _long_rows(series: int = 4, steps: int = 12) -> list[str]:
    rng = np.random.default_rng(0)
    rows = [
        f"s{s},{np.datetime64('2020-01-06') + np.timedelta64(7 * t, 'D')},"
        f"{'' if (s + t) % 5 == 0 else round(float(rng.normal(10, 2)), 3)},{t % 4}"
        for t in range(steps)
        for s in range(series)
    ]
    return [rows[0].replace(",,", ",1.0,"), *rows[1:]]


def _assert_same_windows(a: ForecastDataModule, b: ForecastDataModule) -> None:
    """Every window tensor is the same: each series' raw and normalised values, its gaps, MASE's
    scale, the window index and the statistics it is read with (and, to check the reading,
    the first, middle and last window of each split, item by item)."""
    assert a.series_names == b.series_names
    for x, y in zip(a.series, b.series, strict=True):
        assert torch.equal(x.raw, y.raw) and torch.equal(x.inputs, y.inputs)
        assert torch.allclose(x.mase_scale, y.mase_scale, rtol=0, atol=0, equal_nan=True)
        assert (x.observed is None) == (y.observed is None)
        if x.observed is not None:
            assert np.array_equal(x.observed, y.observed, equal_nan=True)
    for x, y in zip(a.normalizers, b.normalizers, strict=True):
        assert torch.equal(x.shift, y.shift) and torch.equal(x.scale, y.scale)
    assert torch.equal(a.residual_table, b.residual_table)
    for split in ("train", "val", "test"):
        assert np.array_equal(a.windows[split].series, b.windows[split].series)
        assert np.array_equal(a.windows[split].origins, b.windows[split].origins)
        first, second = a.dataset(split), b.dataset(split)
        for index in (0, len(first) // 2, len(first) - 1):
            for key, value in first[index].items():
                other = second[index][key]
                if isinstance(value, torch.Tensor):
                    assert torch.allclose(value, other, rtol=0, atol=0, equal_nan=True), key
                else:
                    assert value == other, key


def test_a_module_reads_the_same_windows_with_the_cache_as_without(tmp_path):
    path = _write(tmp_path / "long.csv", _long_rows())
    plain = _module(path, None)
    cached = _module(path, tmp_path / "cache")
    assert plain.cache_state == "off" and cached.cache_state == "built"
    _assert_same_windows(plain, cached)
    again = _module(path, tmp_path / "cache")
    assert again.cache_state == "reused"
    _assert_same_windows(plain, again)


@pytest.mark.parametrize("name", ["co2", "fertility"])
def test_the_shipped_series_give_the_same_windows_from_a_cached_csv(tmp_path, name):
    settings = {
        "co2": dict(time_column="date", target_columns=["co2"], lookback=104, horizon=26,
                    season_length=52, series_column=None),
        "fertility": dict(time_column="year", target_columns=["fertility"], lookback=15,
                          horizon=5, season_length=1, series_column="country"),
    }[name]  # fmt: skip
    common = dict(covariate_columns=[], missing="ffill", val_fraction=0.15, test_fraction=0.15)
    shipped = ForecastDataModule(source=name, **common, **settings)
    shipped.setup("fit")
    path = export(name, tmp_path / f"{name}.csv")
    cached = _module(path, tmp_path / "cache", **common, **settings)
    assert cached.cache_state == "built"
    _assert_same_windows(shipped, cached)


def test_a_second_read_reuses_the_entry_and_a_changed_file_builds_anew(tmp_path, caplog):
    path = _write(tmp_path / "s.csv", ROWS)
    folder = cache.usable_folder(tmp_path / "cache")
    assert folder is not None
    args = ("date", ["sales", "price"], "id", 1024)
    _, first, built = cached_series(folder, path, *args, chunk_rows=2)
    assert built
    with caplog.at_level(logging.INFO, logger="rnnlab.data.series_cache"):
        _, second, built = cached_series(folder, path, *args, chunk_rows=2)
    assert not built and "series read from the cache" in caplog.text
    _same(second, [(s.name, s.times, s.values, s.rows) for s in first])
    _write(path, [*ROWS, "c,2020-01-20,9,9"])
    _, changed, built = cached_series(folder, path, *args)
    assert built and len(changed[-1].times) == 3
    assert len(list(folder.glob("series-*"))) == 2
    # another choice of columns is another entry
    assert cached_series(folder, path, "date", ["sales"], "id", 1024)[2]


def test_a_refused_file_is_refused_as_without_the_cache_and_not_cached(tmp_path):
    rows = [*_long_rows(), "s1,2020-01-06,1,1"]  # a repeated time of series s1, at the end
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as plain:
        _module(path, None)
    with pytest.raises(DataError) as cached:
        _module(path, tmp_path / "cache")
    assert str(cached.value) == str(plain.value) and "line 50" in str(plain.value)
    assert not list((tmp_path / "cache").glob("series-*"))
    # without a series column, the whole table's message says what to do about one
    with pytest.raises(DataError) as plain:
        _module(path, None, series_column=None)
    with pytest.raises(DataError) as cached:
        _module(path, tmp_path / "cache", series_column=None)
    assert str(cached.value) == str(plain.value) and "data.series_column" in str(plain.value)


def _rewrite_meta(entry: Path, change) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    change(meta)
    (entry / "meta.json").write_text(json.dumps(meta))


def _save_ends(entry: Path, ends: list[int]) -> None:
    np.save(entry / "ends.npy", np.array(ends, dtype=np.int64))


def _save_as(entry: Path, name: str, array: np.ndarray) -> None:
    np.save(entry / f"{name}.npy", array)
    _rewrite_meta(entry, lambda m: m["arrays"].update({name: [array.dtype.str, list(array.shape)]}))


@pytest.mark.parametrize(
    "damage",
    [
        # damage any reader notices
        lambda entry: (entry / "values.npy").write_bytes(b"\x93NUMPY"),
        lambda entry: (entry / "meta.json").write_text("{"),
        lambda entry: np.save(entry / "ends.npy", np.array([1, 9, 2, 9], dtype=np.int64)),
        lambda entry: (entry / "rows.npy").unlink(),
    ],
)
def test_a_damaged_entry_is_rebuilt(tmp_path, caplog, damage):
    path = _write(tmp_path / "s.csv", ROWS)
    folder = cache.usable_folder(tmp_path / "cache")
    assert folder is not None
    args = ("date", ["sales", "price"], "id", 1024)
    cached_series(folder, path, *args)
    damage(next(folder.glob("series-*")))
    with caplog.at_level(logging.WARNING):
        _, series, built = cached_series(folder, path, *args)
    assert built and "is damaged" in caplog.text
    _same(_whole(path), [(s.name, s.times, s.values, s.rows) for s in series])


@pytest.mark.parametrize(
    "damage, problem",
    [
        # arrays of the shapes and dtypes meta.json lists, which only the entry's own check reads
        # ends that decrease
        (lambda entry: _save_ends(entry, [4, 2, 9]), "ends.npy does not span the rows"),
        # a first series without rows
        (lambda entry: _save_ends(entry, [0, 4, 9]), "ends.npy does not span the rows"),
        # a middle series without rows
        (lambda entry: _save_ends(entry, [4, 4, 9]), "ends.npy does not span the rows"),
        # not to the last row
        (lambda entry: _save_ends(entry, [2, 4, 7]), "ends.npy does not span the rows"),
        (
            lambda entry: _rewrite_meta(entry, lambda m: m["info"].update(names=[1, 2, 3])),
            "series names that are not a list of text",
        ),
        (
            lambda entry: _rewrite_meta(entry, lambda m: m["info"].update(names="abc")),
            "series names that are not a list of text",
        ),
        (
            lambda entry: _save_as(entry, "values", np.zeros((9, 2), dtype=np.float32)),
            "values.npy is float32 (9, 2)",
        ),
        (lambda entry: _save_as(entry, "values", np.zeros(18)), "values.npy is float64 (18,)"),
        (lambda entry: _save_as(entry, "times", np.zeros((9, 1))), "times.npy is float64 (9, 1)"),
        (
            lambda entry: _save_as(entry, "values", np.zeros((8, 2))),
            "times, values and rows of different lengths",
        ),
        (
            lambda entry: _save_as(entry, "rows", np.arange(8)),
            "times, values and rows of different lengths",
        ),
        (
            lambda entry: _save_as(entry, "rows", np.arange(9, dtype=np.int32)),
            "rows.npy is int32 (9,)",
        ),
        (
            lambda entry: _save_as(entry, "ends", np.array([4, 7, 9], dtype=np.int32)),
            "ends.npy is int32 (3,)",
        ),
        (
            lambda entry: _save_as(entry, "ends", np.array([4, 9], dtype=np.int64)),
            "not one end a series",
        ),
    ],
)
def test_a_damaged_entry_is_rebuilt_and_the_warning_names_its_damage(
    tmp_path, caplog, damage, problem
):
    path = _write(tmp_path / "s.csv", ROWS)
    folder = cache.usable_folder(tmp_path / "cache")
    assert folder is not None
    args = ("date", ["sales", "price"], "id", 1024)
    cached_series(folder, path, *args)
    entry = next(folder.glob("series-*"))
    damage(entry)
    with caplog.at_level(logging.WARNING):
        _, series, built = cached_series(folder, path, *args)
    assert built
    assert caplog.messages == [f"the data cache {entry} is damaged ({problem}): rebuilding it"]
    assert [p.name for p in folder.iterdir()] == [entry.name]  # nothing left beside it
    _same(_whole(path), [(s.name, s.times, s.values, s.rows) for s in series])


def test_messages_name_lines_through_the_cache_as_without_it(tmp_path, caplog):
    path = _write(tmp_path / "gaps.csv", _long_rows())
    with pytest.raises(DataError) as plain:
        _module(path, None, missing="error")
    with (
        caplog.at_level(logging.INFO, logger="rnnlab.data.series_cache"),
        pytest.raises(DataError) as cached,
    ):
        _module(path, tmp_path / "cache", missing="error")
    assert str(cached.value) == str(plain.value)
    assert f"{path} has missing values at line" in str(plain.value)
    entry = next((tmp_path / "cache").glob("series-*"))
    assert f"data.file={path}: series cached in " in caplog.text and str(entry.name) in caplog.text
    with (
        caplog.at_level(logging.INFO, logger="rnnlab.data.series_cache"),
        pytest.raises(DataError) as reused,
    ):
        _module(path, tmp_path / "cache", missing="error")
    assert str(reused.value) == str(plain.value)
    assert f"data.file={path}: series read from the cache {entry}" in caplog.text


def test_an_entry_of_one_row_series_is_reused(tmp_path):
    path = _write(tmp_path / "ones.csv", [f"{n},2020-01-06,{k},{k}" for k, n in enumerate("xyz")])
    folder = cache.usable_folder(tmp_path / "cache")
    assert folder is not None
    args = ("date", ["sales", "price"], "id", 1024)
    assert cached_series(folder, path, *args)[2]
    _, series, built = cached_series(folder, path, *args)
    assert not built and [len(s.times) for s in series] == [1, 1, 1]


def test_the_entry_is_named_by_its_key_and_logged(tmp_path, caplog):
    path = _write(tmp_path / "s.csv", ROWS)
    key = {
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "time_column": "date",
        "value_columns": ["sales", "price"],
        "series_column": "id",
        "reader": SERIES_READER,
    }  # the key an entry of another version with the same SERIES_READER is found by
    folder = tmp_path / "cache"
    folder.mkdir()
    entry = folder / cache.entry_name("series", key)
    with caplog.at_level(logging.DEBUG, logger="rnnlab.data"):
        assert cached_series(folder, path, "date", ["sales", "price"], "id", 1024)[2]
        assert not cached_series(folder, path, "date", ["sales", "price"], "id", 1024)[2]
    assert [p.name for p in folder.iterdir()] == [entry.name]
    assert json.loads((entry / "meta.json").read_text())["key"] == key
    where = f"data.file={path}"
    for message in (
        f"{where}: its SHA-256, the cache's key ...",
        f"{where}: reading its series into the cache ...",
        f"{where}: series cached in {entry}",
        f"{where}: series read from the cache {entry}",
    ):
        assert message in caplog.messages


def test_a_file_missing_or_over_the_limit_is_refused_as_without_the_cache(tmp_path):
    path = _write(tmp_path / "s.csv", ROWS)  # 185 bytes, over 0.0001 MiB (104 bytes)
    folder = tmp_path / "cache"
    folder.mkdir()
    for file, limit in ((path, 0.0001), (tmp_path / "gone.csv", 1024.0)):
        with pytest.raises(DataError) as plain:
            read_csv(file, "data.file", limit)
        with pytest.raises(DataError) as cached:
            cached_series(folder, file, "date", ["sales", "price"], "id", limit)
        assert str(cached.value) == str(plain.value)
    assert str(plain.value).endswith("does not exist; check data.file")
    assert not list(folder.iterdir())
    with pytest.raises(DataError) as cached:
        cached_series(folder, path, "date", ["sales"], None, 0.0001, setting="input")
    assert str(cached.value).startswith(f"input={path} is ")
    assert str(cached.value).endswith(f"; {RAISE_LIMIT}")


def test_the_file_is_read_in_blocks_of_the_rows_asked_for(tmp_path):
    # ids that read as numbers in a first block of two rows and as text in the second: left to
    # the whole-table read in blocks of two (nothing cached), cached when one block holds all
    path = _write(
        tmp_path / "ids.csv", ["1,2020-01-06,1,1", "2,2020-01-13,1,1", "x1,2020-01-20,1,1"]
    )
    folder = tmp_path / "cache"
    folder.mkdir()
    args = ("date", ["sales", "price"], "id", 1024)
    assert cached_series(folder, path, *args, chunk_rows=2) is None
    assert not list(folder.iterdir())
    _, series, built = cached_series(folder, path, *args, chunk_rows=3)
    assert built and [s.name for s in series] == ["1", "2", "x1"]


def test_an_entry_another_process_put_in_place_is_checked_before_use(tmp_path, monkeypatch, caplog):
    """Two processes build the same entry; the other one's rename wins and this one's copy is
    dropped. What is then in place is checked like any entry read back: a damaged one is
    discarded, not used, and the error names it."""
    path = _write(tmp_path / "s.csv", ROWS)
    folder = tmp_path / "cache"
    folder.mkdir()
    commit = cache.EntryWriter.commit

    def another_process_first(writer: cache.EntryWriter, info: dict) -> None:
        other = cache.EntryWriter(writer.final.parent, writer.final.name, writer.key)
        for name in writer.arrays:
            other.save(name, np.load(writer.temporary / f"{name}.npy"))
        other.save("ends", np.array([4, 2, 9], dtype=np.int64))
        commit(other, info)
        commit(writer, info)

    monkeypatch.setattr(cache.EntryWriter, "commit", another_process_first)
    with (
        caplog.at_level(logging.INFO, logger="rnnlab.data.cache"),
        pytest.raises(DataError) as caught,
    ):
        cached_series(folder, path, "date", ["sales", "price"], "id", 1024)
    (entry,) = {r.args[0] for r in caplog.records}
    assert str(caught.value).startswith(f"the data cache {entry} was damaged as soon as it was")
    assert str(caught.value).endswith("set data.cache_dir=null to read the file without a cache")
    assert caplog.messages == [
        f"the data cache {entry} was written meanwhile by another process",
        f"the data cache {entry} is damaged (ends.npy does not span the rows): rebuilding it",
    ]
    assert entry.parent == folder and entry.name.startswith("series-")
    assert not list(folder.iterdir())

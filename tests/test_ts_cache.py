""".ts files streamed (``data.ts_stream``) and cached (``data.ts_cache``): every shipped file
gives sktime's numbers, cached or not, whatever the block size; a second read reuses the entry,
a changed file or a damaged entry builds a new one; malformed lines end in one line naming
their line; memory stays bounded; files with timestamps are read by sktime; the normaliser
fitted in streaming passes matches the in-memory fit."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.data import cache, ts_cache, ts_stream, ucr
from rnnlab.data.classification import ClassificationDataModule
from rnnlab.data.inputs import RAISE_LIMIT
from rnnlab.data.normalize import Normalizer
from rnnlab.data.ragged import MappedSequences
from rnnlab.data.regression import RegressionDataModule
from rnnlab.data.sequences import check_sequences
from rnnlab.data.ts_stream import TsStream
from rnnlab.utils.errors import DataError
from tests.conftest import TS_HEADER, write_ts

LAYOUT = ts_stream._LAYOUT
ROWS = ["1,2,3:a", "4,5:b", "6,7,8,9:a", "0.1,0.2,1e-3:b", "2.5,3.5:a", "-1,-2,-3,-4:b"]


def _shipped() -> list[tuple[Path, str]]:
    """Every .ts file rnnlab reads from sktime: the archive's (classes) and regression sets."""
    root = ucr._data_root()
    names = [(name, "class") for name in ucr.shipped_names()]
    names += [("Covid3Month", "target"), ("Tecator", "target")]
    return [(root / n / f"{n}_{s}.ts", kind) for n, kind in names for s in ("TRAIN", "TEST")]


def _cached(folder: Path, path: Path | str, kind: str = "class", **options):
    folder = cache.usable_folder(folder)
    found = ts_cache.cached_ts_file(folder, path, kind, "data.train_file", 1024, "", **options)
    assert found is not None
    return found


def _same(a, b) -> None:
    (x, x_labels), (y, y_labels) = a, b
    assert len(x) == len(y)
    assert all(
        u.dtype == v.dtype == torch.float32 and torch.equal(u, v) for u, v in zip(x, y, strict=True)
    )
    assert x_labels.dtype == y_labels.dtype and np.array_equal(x_labels, y_labels)


def test_every_shipped_file_gives_sktimes_numbers_cached_or_not(tmp_path):
    for path, kind in _shipped():
        x, labels = ucr._load_with_sktime(path, str(path), kind, "data.name", 1024, "")
        sktime = (check_sequences(x, "d"), labels)
        streamed, streamed_labels = ucr.load_ts_file(path, labels=kind)
        assert isinstance(streamed.values, torch.Tensor) and streamed.values.dtype == torch.float64
        _same((check_sequences(streamed, "d"), streamed_labels), sktime)
        (cached, cached_labels), built = _cached(tmp_path, path, kind)
        assert built and isinstance(cached, MappedSequences)
        _same((check_sequences(cached, "d"), cached_labels), sktime)


def test_values_are_read_as_float_reads_them(tmp_path):
    rows = ["1_0,2:a", "1e1,+2:b", " 3 , 4 :a", "1.25,-0.000:b", "0.1,1.0000000000000002:a"]
    path = Path(write_ts(tmp_path / "odd.ts", rows))
    x, labels = ucr._load_with_sktime(path, str(path), "class", "x", 1024, "")
    streamed, streamed_labels = ucr.load_ts_file(path)
    assert torch.equal(streamed.values, x.values) and labels.tolist() == streamed_labels.tolist()
    assert streamed.values[:, 0].tolist() == [10, 2, 10, 2, 3, 4, 1.25, -0.0, 0.1, 1 + 2**-52]
    assert torch.signbit(streamed.values[7, 0])


def test_tiny_blocks_give_the_same_arrays(tmp_path):
    path = ucr._data_root() / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"
    whole, _ = _cached(tmp_path / "a", path)
    for rows in (1, 60):
        found, _ = _cached(tmp_path / f"b{rows}", path, block_rows=rows)
        _same(found, whole)
        with TsStream(path, "x", 1024, block_rows=rows) as stream:
            blocks = list(stream.blocks())
        assert len(blocks) == 270 if rows == 1 else 1 < len(blocks) < 270


def test_a_second_read_reuses_the_entry_and_a_changed_file_builds_anew(tmp_path, caplog):
    path = Path(write_ts(tmp_path / "d.ts", ROWS))
    first, built = _cached(tmp_path / "cache", path)
    assert built
    with caplog.at_level(logging.INFO, logger="rnnlab.data.ts_cache"):
        again, built = _cached(tmp_path / "cache", path)
    assert not built and "samples read from the cache" in caplog.text
    _same(again, first)
    write_ts(path, [*ROWS, "5,5:a"])
    changed, built = _cached(tmp_path / "cache", path)
    assert built and len(changed[0]) == len(ROWS) + 1
    assert len(list((tmp_path / "cache").iterdir())) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: (e / "values.npy").write_bytes((e / "values.npy").read_bytes()[:-8]),
        lambda e: np.save(e / "offsets.npy", np.array([0, 3, 2, 5, 9, 12, 16])),
        lambda e: np.save(e / "codes.npy", np.array([0, 1, 0, 1, 0, 2], dtype=np.int32)),
        lambda e: (e / "meta.json").write_text("{"),
    ],
    ids=["truncated values", "offsets decrease", "class code beyond", "meta unreadable"],
)
def test_a_damaged_entry_is_rebuilt(tmp_path, caplog, damage):
    path = Path(write_ts(tmp_path / "d.ts", ROWS))
    _cached(tmp_path / "cache", path)
    (entry,) = (tmp_path / "cache").iterdir()
    damage(entry)
    with caplog.at_level(logging.WARNING):
        again, built = _cached(tmp_path / "cache", path)
    assert built and "is damaged" in caplog.text
    x, labels = ucr.load_ts_file(path)
    _same(again, (check_sequences(x, "d"), labels))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["1,2:a", "1,x,3:b"], "line 9: channel 1 holds 'x', not a number"),
        (["1,2:3,4:a", "1,2:b"], "line 9: 1 channel(s), where the first sample has 2"),
        (["1,2:a", "", "1,2,:b"], "line 10: channel 1 holds '', not a number"),
        (["1,2:a", "1,nan(1):b"], "line 9: channel 1 holds 'nan(1)', not a number"),
        (["a", "1,2:b"], "line 8: a sample without channels"),
    ],
)
def test_a_malformed_line_is_one_line_naming_it(tmp_path, rows, message):
    path = write_ts(tmp_path / "bad.ts", rows)
    for read in (lambda: ucr.load_ts_file(path), lambda: _cached(tmp_path / "c", path)):
        with pytest.raises(DataError) as caught:
            read()
        assert str(caught.value) == f"cannot read {path} as a .ts file: {message}; {LAYOUT}"
    assert not list((tmp_path / "c").iterdir())  # nothing half built is left


def test_refused_samples_give_the_in_memory_error_and_are_not_cached(tmp_path):
    # each bad sample the second of its block of 4 steps, most bad on their first step
    for i, bad in enumerate(["NaN,1,3:a", "1,1e308,3:a", ":a", "1e-300,1:b"]):
        path = write_ts(tmp_path / f"r{i}.ts", [*ROWS, "1:a", bad, "1,2:a"])
        x, _ = ucr.load_ts_file(path)
        with pytest.raises(DataError) as expected:
            check_sequences(x, "w")
        (cached, labels), built = _cached(tmp_path / "c", path, block_rows=4)
        assert cached.refused is not None and cached.refused[0] == len(ROWS) + 1
        # nothing but the refused sample: no samples, no labels, nothing built
        assert not built and len(cached) == 0 and labels.shape == (0,)
        assert cached.values.shape == (0, 1) and cached.values.dtype == np.float32
        assert cached.offsets.tolist() == [0] and cached.offsets.dtype == np.int64
        with pytest.raises(DataError) as got:
            check_sequences(cached, "w")
        assert str(got.value) == str(expected.value)
    assert not list((tmp_path / "c").iterdir())


def test_a_bad_target_names_its_sample_across_blocks(tmp_path):
    header = TS_HEADER.replace("@classLabel true a b", "@targetLabel true")
    path = tmp_path / "t.ts"
    path.write_text(header + "".join(f"{i},{i}:{i / 2}\n" for i in range(9)) + "1,2:x\n")
    with pytest.raises(DataError, match=r"t\.ts sample 9 has target 'x', not a finite number"):
        _cached(tmp_path / "c", path, "target", block_rows=4)


def test_memory_stays_flat_in_the_files_size_while_it_is_cached(tmp_path):
    rng = np.random.default_rng(0)
    peaks = []
    for count in (1000, 4000):
        lines = [
            ":".join(",".join(f"{v:.3f}" for v in rng.normal(size=50)) for _ in range(3)) + ":a"
            for _ in range(count)
        ]
        path = Path(write_ts(tmp_path / f"{count}.ts", lines))
        tracemalloc.start()
        try:
            _cached(tmp_path / f"c{count}", path, block_rows=1000)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # 4,000 samples are 3.9 MB of file and 4.8 MB of float64 values; what is held is a block
    # of 1,000 steps and fixed buffers (the 1 MiB the hash reads at a time), whatever the size
    assert peaks[1] < 1.25 * peaks[0] and peaks[1] < 4000 * 150 * 8 / 2


def test_a_file_with_timestamps_is_read_by_sktime(tmp_path):
    path = tmp_path / "stamped.ts"
    header = TS_HEADER.replace("@timeStamps false", "@timeStamps true")
    path.write_text(header + "(0,1.5),(1,2.5):a\n(0,3.0),(1,4.0),(2,5.0):b\n")
    assert ts_cache.cached_ts_file(tmp_path, path, "class", "x", 1024, "") is None
    x, labels = ucr.load_ts_file(path)
    assert [s[:, 0].tolist() for s in x] == [[1.5, 2.5], [3.0, 4.0, 5.0]]
    assert labels.tolist() == ["a", "b"]


@pytest.mark.parametrize("method", ["zscore", "minmax", "none"])
@pytest.mark.parametrize("how", ["none", "maxabs"])
def test_the_streamed_normaliser_fit_matches_the_in_memory_fit(tmp_path, monkeypatch, method, how):
    path = ucr._data_root() / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"
    (sequences, _), _ = _cached(tmp_path, path)
    train = sequences.take(np.arange(0, 270, 3))
    exact = Normalizer(method)
    ts_cache.fit_normalizer(exact, train, how)
    monkeypatch.setattr(ts_cache, "EXACT_VALUES", 0)
    monkeypatch.setattr(ts_cache, "_CHUNK_ROWS", 50)  # many chunks, samples cut across none
    streamed = Normalizer(method)
    ts_cache.fit_normalizer(streamed, train, how)
    assert torch.allclose(streamed.shift, exact.shift, rtol=1e-6, atol=1e-7)
    assert torch.allclose(streamed.scale, exact.scale, rtol=1e-6)
    if method == "zscore":  # and the statistics are of the train samples only
        other = Normalizer(method)
        ts_cache.fit_normalizer(other, sequences.take(np.arange(1, 270, 3)), how)
        assert not torch.allclose(other.shift, streamed.shift)


@pytest.mark.parametrize("module", [ClassificationDataModule, RegressionDataModule])
def test_a_module_reads_the_same_batches_with_the_cache_as_without(tmp_path, module):
    name = "JapaneseVowels" if module is ClassificationDataModule else "Covid3Month"
    root = ucr._data_root() / name
    files = {
        "train_file": str(root / f"{name}_TRAIN.ts"),
        "test_file": str(root / f"{name}_TEST.ts"),
    }
    plain = module(**files, cache_dir=None, batch_size=8, bucket=True)
    cached = module(**files, cache_dir=str(tmp_path / "cache"), batch_size=8, bucket=True)
    for each in (plain, cached):
        each.setup("fit")
    assert isinstance(cached.splits["train"][0], MappedSequences)
    assert torch.equal(plain.normalizer.shift, cached.normalizer.shift)
    assert torch.equal(plain.normalizer.scale, cached.normalizer.scale)
    for split in ("train", "val", "test"):
        loaders = (plain.split_loader(split, True), cached.split_loader(split, True))
        for a, b in zip(*loaders, strict=True):
            assert torch.equal(a.x, b.x) and torch.equal(a.lengths, b.lengths)
            assert torch.equal(a.y, b.y)


HEADER_LINES = TS_HEADER.splitlines()


TAGS_FIX = (
    "give the .ts header its @problemName, @timeStamps, @univariate and @classLabel (or "
    "@targetLabel) lines"
)
TF = "needs true or false; write '{} false'"
AFTER = "after @data; put every @tag line before @data"


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (("@timeStamps false", "@timeStamps maybe"), "line 2: @timestamps " + TF),
        (("@timeStamps false", "@timeStamps"), "line 2: @timestamps " + TF),
        (("@timeStamps false", "@timeStamps  false"), "line 2: @timestamps " + TF),
        (("@univariate true", "@univariate true false"), "line 4: @univariate " + TF),
        (("@problemName toy", "@problemName"), "line 1: @problemname has no value; give it one"),
        (("@classLabel true a b", "@classLabel"), "line 6: @classlabel has no value; give it one"),
        (
            ("@classLabel true a b", "@targetLabel"),
            "line 6: @targetlabel has no value; give it one",
        ),
        (("@classLabel true a b", "@classLabel yes a"), "line 6: @classlabel " + TF),
        (
            ("@classLabel true a b", "@classLabel true"),
            "line 6: @classlabel true lists no classes; list them after 'true'",
        ),
        (
            ("@classLabel true a b", "@targetLabel true x"),
            "line 6: @targetlabel takes true or false only; drop what follows",
        ),
        (("@data", "@data now"), "line 7: @data has a value; write @data alone on its line"),
        (("@data", "@data\n\n"), "line 11: a header tag " + AFTER),
        (("@univariate true", "@data\n@univariate true"), "line 5: @univariate " + AFTER),
    ],
)
def test_a_malformed_header_is_one_line_naming_its_line(tmp_path, replace, message):
    header = TS_HEADER.replace(*replace)
    path = tmp_path / "h.ts"
    path.write_text(header + "1,2:a\n@problemName again\n")
    with pytest.raises(DataError) as caught:
        ucr.load_ts_file(path, labels=None)
    tag = message.split("@")[1].split(" ")[0]
    assert str(caught.value) == f"cannot read {path} as a .ts file: {message.format('@' + tag)}"


def test_what_sktime_skips_is_skipped_and_labels_are_lower_case(tmp_path):
    # lines before @data that are no tag, blank lines anywhere and a repeated @data are
    # skipped; every line is lower-cased, and '?' is NaN even in a label, as sktime reads it
    header = TS_HEADER.replace("@data", "% a comment\n@dimensions 1\n@data\n\n@data")
    path = tmp_path / "s.ts"
    path.write_text(header + "1,2:A\n\n3,4:?\r\n@data\n5:b\r6,7:a")
    x, labels = ucr._load_with_sktime(path, str(path), "class", "x", 1024, "")
    streamed, streamed_labels = ucr.load_ts_file(path)
    assert streamed_labels.tolist() == labels.tolist() == ["a", "NaN", "b", "a"]
    assert torch.equal(streamed.values, x.values) and streamed.offsets.tolist() == [0, 2, 4, 5, 7]
    with TsStream(path, "x", 1024) as stream:
        assert (stream.header.kind, stream.header.labelled) == ("class", True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "it holds no samples; add data lines after @data"),
        (TS_HEADER, "line 7: it holds no samples; add data lines after @data"),
        (
            TS_HEADER.replace("@classLabel true a b\n", "") + "1:a\n",
            "line 7: the header lacks @classlabel or @targetlabel before the data; " + TAGS_FIX,
        ),
        (
            "@data\n",
            "line 1: the header lacks @problemname, @timestamps, @univariate, @classlabel or "
            "@targetlabel before the data; " + TAGS_FIX,
        ),
    ],
)
def test_a_file_without_samples_or_tags_is_refused(tmp_path, text, message):
    path = tmp_path / "e.ts"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        ucr.load_ts_file(path, labels=None)
    assert str(caught.value) == f"cannot read {path} as a .ts file: {message}"


def test_a_declared_kind_is_the_first_true_one(tmp_path):
    path = tmp_path / "k.ts"
    header = TS_HEADER.replace("@classLabel true a b", "@classLabel false\n@targetLabel true")
    path.write_text(header + "1,2:0.5\n")
    with TsStream(path, "x", 1024) as stream:
        assert (stream.header.kind, stream.header.labelled) == ("target", True)
    with pytest.raises(DataError, match=r"declares target labels; this task needs '@classLabel"):
        ucr.load_ts_file(path, labels="class")
    assert ucr.load_ts_file(path, labels="target")[1].tolist() == [0.5]


def test_a_file_declaring_no_labels_has_none(tmp_path):
    path = tmp_path / "n.ts"
    path.write_text(TS_HEADER.replace("@classLabel true a b", "@classLabel false") + "1,2\n3\n")
    with TsStream(path, "x", 1024, block_rows=1) as stream:
        assert (stream.header.kind, stream.header.labelled) == (None, False)
        assert [b.labels for b in stream.blocks()] == [None, None]
    x, labels = ucr.load_ts_file(path, labels=None)
    assert labels is None and x.offsets.tolist() == [0, 2, 3]
    with pytest.raises(DataError, match=r"declares no labels; this task needs '@classLabel"):
        ucr.load_ts_file(path, labels="class")


def test_blocks_are_cut_once_they_hold_block_rows_steps(tmp_path):
    path = write_ts(tmp_path / "b.ts", ROWS)  # 3, 2, 4, 3, 2 and 4 steps
    with TsStream(path, "x", 1024, block_rows=4) as stream:
        blocks = list(stream.blocks())
    assert [b.first for b in blocks] == [0, 2, 3, 5]
    assert [b.lengths.tolist() for b in blocks] == [[3, 2], [4], [3, 2], [4]]
    assert [b.labels for b in blocks] == [["a", "b"], ["a"], ["b", "a"], ["b"]]


def test_channels_of_different_lengths_name_their_sample(tmp_path):
    path = write_ts(tmp_path / "c.ts", ["1,2:3,4:a"] * 7 + ["1,2:3:b"])
    plain = tmp_path / "plain.ts"
    plain.write_text(TS_HEADER.replace("@classLabel true a b", "@classLabel false") + "1:2,3\n")
    rule = "every channel of a sample must have the same number of time steps"
    with pytest.raises(DataError) as caught:
        list(TsStream(path, "x", 1024, where="mine", block_rows=4).blocks())
    assert str(caught.value) == f"mine sample 7: channels have different lengths [1, 2]; {rule}"
    with pytest.raises(DataError) as caught:  # without a name for the data: its path
        list(TsStream(plain, "x", 1024).blocks())
    assert str(caught.value) == f"{plain} sample 0: channels have different lengths [1, 2]; {rule}"


def test_a_file_that_cannot_be_opened_is_refused_naming_its_setting(tmp_path):
    with pytest.raises(
        DataError, match=r"^data file .*gone.ts does not exist; check data.test_file$"
    ):
        TsStream(tmp_path / "gone.ts", "data.test_file", 1024)
    path = write_ts(tmp_path / "big.ts", ROWS * 100)
    with pytest.raises(DataError) as caught:
        TsStream(path, "input", 0.001, "shorten it")
    assert str(caught.value).startswith(f"input={path} is ") and "; shorten it" in str(caught.value)


def test_a_read_error_is_one_line(tmp_path, monkeypatch):
    path = write_ts(tmp_path / "r.ts", ROWS)

    def failing(fd, **options):
        os.close(fd)
        return FailingFile()

    class FailingFile:
        def __iter__(self):
            yield from TS_HEADER.splitlines(keepends=True)
            raise OSError(5, "Input/output error")

        def close(self):
            pass

    monkeypatch.setattr(ts_stream, "open", failing, raising=False)
    with pytest.raises(DataError) as caught:
        list(TsStream(path, "data.train_file", 1024).blocks())
    assert str(caught.value) == (
        f"cannot read data.train_file={path}: Input/output error; check the file"
    )


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path):
    path = Path(write_ts(tmp_path / "g.ts", ["1,2:a"] * 10))
    with TsStream(path, "data.train_file", 0.01) as stream:  # 10 KiB
        with path.open("a") as grow:
            grow.write("1,2:a\n" * 2500)  # to 15 kB: within twice the limit
        with pytest.raises(DataError) as caught:
            list(stream.blocks())
    assert str(caught.value) == (
        f"data.train_file={path} holds more than data.max_file_mb=0.01 MiB; {RAISE_LIMIT}"
    )


def test_a_file_exactly_at_the_limit_is_read(tmp_path):
    path = Path(write_ts(tmp_path / "x.ts", ["1,2:a"] * 1100))  # the limit checked at 1024
    with TsStream(path, "x", path.stat().st_size / (1 << 20)) as stream:
        assert sum(len(b.lengths) for b in stream.blocks()) == 1100


def test_text_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "u.ts"
    path.write_bytes(TS_HEADER.encode() + b"1,2:a\n" + b"1,\xff:b\n")
    with pytest.raises(DataError) as caught:
        ucr.load_ts_file(path)
    assert str(caught.value) == (
        f"cannot read {path} as a .ts file: line 9: not UTF-8 text (invalid start byte); "
        "save the file as UTF-8"
    )


# --- the cache entry: its key, its checks, its refusals --------------------------------------
def test_the_entry_is_named_by_its_key_and_logged(tmp_path, caplog):
    path = Path(write_ts(tmp_path / "d.ts", [*ROWS, "7:a"]))  # a sample of one step
    key = {
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "labels": "class",
        "reader": ts_cache.TS_READER,
    }
    folder = tmp_path / "cache"
    entry = folder / cache.entry_name("ts", key)
    with caplog.at_level(logging.DEBUG):
        _cached(folder, path)
        _cached(folder, path)
    assert [p.name for p in folder.iterdir()] == [entry.name]
    assert entry.name.startswith("ts-")
    messages = [r.getMessage() for r in caplog.records]
    assert f"data.train_file={path}: samples cached in {entry}" in messages
    assert f"data.train_file={path}: samples read from the cache {entry}" in messages
    assert f"data.train_file={path}: its SHA-256, the cache's key ..." in messages
    assert f"data.train_file={path}: reading its samples into the cache ..." in messages


def test_a_one_sample_file_is_reused(tmp_path):
    path = write_ts(tmp_path / "one.ts", ["5:a"])
    _cached(tmp_path / "c", path)
    (x, labels), built = _cached(tmp_path / "c", path)
    assert not built and [s.tolist() for s in x] == [[[5.0]]] and labels.tolist() == ["a"]


def _rewrite(entry: Path, name: str, array: np.ndarray) -> None:
    """Replace one array of an entry, its meta.json agreeing (only the entry's own checks can
    find it)."""
    np.save(entry / f"{name}.npy", array)
    meta = json.loads((entry / "meta.json").read_text())
    meta["arrays"][name] = [array.dtype.str, list(array.shape)]
    (entry / "meta.json").write_text(json.dumps(meta))


def _classes(entry: Path, names: list) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["info"]["classes"] = names
    (entry / "meta.json").write_text(json.dumps(meta))


SPAN = "offsets.npy does not span values.npy"
EMPTY = "offsets.npy has an empty or negative sample"


@pytest.mark.parametrize(
    ("kind", "damage", "reason"),
    [
        ("class", lambda e: _rewrite(e, "values", np.zeros((18, 1))), "values.npy is float64"),
        ("class", lambda e: _rewrite(e, "values", np.zeros(18, np.float32)), "values.npy is"),
        ("class", lambda e: _rewrite(e, "offsets", np.array([1, 3, 5, 9, 12, 14, 18])), SPAN),
        ("class", lambda e: _rewrite(e, "offsets", np.array([0, 3, 5, 9, 12, 14, 16])), SPAN),
        ("class", lambda e: _rewrite(e, "offsets", np.array([0, 3, 3, 9, 12, 14, 18])), EMPTY),
        ("class", lambda e: _rewrite(e, "offsets", np.array([0, 3, 2, 9, 12, 14, 18])), EMPTY),
        (
            "class",
            lambda e: _rewrite(e, "codes", np.zeros(5, np.int32)),
            "no labels, or not one a sample",
        ),
        (
            "class",
            lambda e: _rewrite(e, "codes", np.array([0, 1, 0, 1, 0, 2], np.int32)),
            "a class code beyond the class names",
        ),
        ("class", lambda e: _classes(e, [1, 2]), "class names that are not text"),
        (
            "target",
            lambda e: _rewrite(e, "targets", np.array([1, 2, np.nan, 4, 5, 6.0])),
            "a target that is not finite",
        ),
        (
            "target",
            lambda e: (
                _rewrite(e, "values", np.zeros((0, 1), np.float32)),
                _rewrite(e, "offsets", np.zeros(1, np.int64)),
                _rewrite(e, "targets", np.zeros(0)),
            ),
            SPAN,
        ),
    ],
)
def test_an_entry_its_own_checks_refuse_is_rebuilt(tmp_path, caplog, kind, damage, reason):
    rows = ROWS if kind == "class" else [r[:-1] + str(i) for i, r in enumerate(ROWS)]
    header = (
        TS_HEADER
        if kind == "class"
        else TS_HEADER.replace("@classLabel true a b", "@targetLabel true")
    )
    path = tmp_path / "d.ts"
    path.write_text(header + "\n".join(rows) + "\n")
    _cached(tmp_path / "cache", path, kind)
    (entry,) = (tmp_path / "cache").iterdir()
    damage(entry)
    with caplog.at_level(logging.WARNING):
        again, built = _cached(tmp_path / "cache", path, kind)
    assert built and f"the data cache {entry} is damaged ({reason}" in caplog.text
    x, labels = ucr.load_ts_file(path, labels=kind)
    _same(again, (check_sequences(x, "d"), labels))


def test_the_cache_refuses_what_the_in_memory_reader_refuses(tmp_path, monkeypatch):
    path = Path(write_ts(tmp_path / "d.ts", ROWS))
    with pytest.raises(DataError) as caught:
        _cached(tmp_path / "c", path, "target")
    assert str(caught.value) == (
        f"{path} declares class labels; this task needs '@targetLabel true' in the header "
        "before @data"
    )
    folder = cache.usable_folder(tmp_path / "c")
    with pytest.raises(
        DataError, match=r"^data file .*gone.ts does not exist; check data.test_file$"
    ):
        ts_cache.cached_ts_file(folder, tmp_path / "gone.ts", "class", "data.test_file", 1, "x")
    with pytest.raises(DataError) as caught:
        ts_cache.cached_ts_file(folder, path, "class", "input", 0.0001, "shorten it")
    assert str(caught.value).startswith(f"input={path} is ")
    assert str(caught.value).endswith("; shorten it")
    hashed = ts_cache.file_sha256

    def hash_then_grow(*args):  # the file grows between its hash and its reading
        found = hashed(*args)
        with path.open("a") as grow:
            grow.write("1,2:a\n" * 200)
        return found

    monkeypatch.setattr(ts_cache, "file_sha256", hash_then_grow)
    with pytest.raises(DataError) as caught:
        ts_cache.cached_ts_file(folder, path, "class", "input", 0.001, "shorten it")
    assert str(caught.value).startswith(f"input={path} is ")
    assert str(caught.value).endswith("; shorten it")
    assert not list((tmp_path / "c").iterdir())


def test_the_cache_names_the_data_as_told_and_reads_on_past_a_refused_sample(tmp_path):
    path = write_ts(tmp_path / "c.ts", ["1,2:3,4:a"] * 7 + ["1,2:3:b"])
    with pytest.raises(DataError, match=r"^mine sample 7: channels have different lengths"):
        _cached(tmp_path / "c", path, where="mine", block_rows=4)
    # a refused sample, then a malformed line: the file's error, as in memory
    path = write_ts(tmp_path / "r.ts", ["1,NaN:a", "1,2:b", "1,x:a"])
    with pytest.raises(DataError, match=r"as a .ts file: line 10: channel 1 holds 'x'"):
        ucr.load_ts_file(path)
    with pytest.raises(DataError, match=r"as a .ts file: line 10: channel 1 holds 'x'"):
        _cached(tmp_path / "c", path, block_rows=1)


# --- the normaliser's streamed fit ------------------------------------------------------------
def _zero_channel_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(40):
        length = int(rng.integers(3, 30))
        second = np.zeros(length) if i % 3 == 0 else rng.normal(0, 5, length)
        channels = [rng.normal(2, 3, length), second]
        rows.append(":".join(",".join(f"{v:.4f}" for v in c) for c in channels) + ":" + "ab"[i % 2])
    return Path(write_ts(tmp_path / "z.ts", rows))


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_the_streamed_fit_over_chunks_shorter_than_samples(tmp_path, monkeypatch, method):
    (sequences, _), _ = _cached(tmp_path / "c", _zero_channel_file(tmp_path))
    train = sequences.take(np.arange(1, 40, 2))  # the last sample among them
    for how in ("none", "maxabs"):
        exact = Normalizer(method)
        ts_cache.fit_normalizer(exact, train, how)
        with monkeypatch.context() as patch:
            patch.setattr(ts_cache, "EXACT_VALUES", 0)
            patch.setattr(ts_cache, "_CHUNK_ROWS", 10)  # samples of up to 29 steps
            streamed = Normalizer(method)
            ts_cache.fit_normalizer(streamed, train, how)
        assert torch.allclose(streamed.shift, exact.shift, rtol=1e-6, atol=1e-7), how
        assert torch.allclose(streamed.scale, exact.scale, rtol=1e-6), how


def test_the_fit_streams_above_exact_values_giving_pages_back(tmp_path, monkeypatch, caplog):
    path = ucr._data_root() / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"
    (sequences, _), _ = _cached(tmp_path, path)
    count = int(sequences.lengths.sum()) * 12
    streamed, given_back = [], []
    real = ts_cache._statistics
    monkeypatch.setattr(ts_cache, "_statistics", lambda *a: streamed.append(1) or real(*a))
    monkeypatch.setattr(cache, "drop_pages", lambda array: given_back.append(array))
    for limit, expected in ((count, []), (count - 1, [1])):
        streamed.clear()
        monkeypatch.setattr(ts_cache, "EXACT_VALUES", limit)
        with caplog.at_level(logging.DEBUG, logger="rnnlab.data"):
            ts_cache.fit_normalizer(Normalizer("zscore"), sequences, "none")
        assert streamed == expected, limit
    assert given_back and all(array is sequences.values for array in given_back)
    assert "fitting the normaliser on the training values ..." in caplog.text

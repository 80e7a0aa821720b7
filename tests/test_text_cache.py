"""The disk cache of a language model's text (``data.cache``, ``data.text_cache``): the ids and
scores it gives are those of the text read into memory, a second run reuses it without building,
a changed file or setting builds a new entry, a damaged entry is rebuilt and never trusted, an
unusable folder falls back to no cache with a warning, and builders racing end with one entry."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from rnnlab.data import cache, text_cache
from rnnlab.data.corpus import Vocabulary, default_corpus, read_text, text_blocks
from rnnlab.data.text import TextDataModule
from rnnlab.utils.errors import DataError

# multi-byte characters (2, 3 and 4 bytes in UTF-8) throughout, so that tiny blocks split them
TEXT = "Größe € 😀 naïve — " * 40 + "the end: ß€😀 and one character only in test: ✓"


def _same(cached: TextDataModule, plain: TextDataModule) -> None:
    assert cached.vocab is not None and plain.vocab is not None
    assert cached.vocab.chars == plain.vocab.chars
    assert (cached.sha256, cached.ngram_order, cached.fitted) == (
        plain.sha256,
        plain.ngram_order,
        plain.fitted,
    )
    for name, ids in plain.ids.items():
        assert cached.ids[name].dtype == ids.dtype
        assert np.array_equal(cached.ids[name], ids), name
    assert cached.baselines.keys() == plain.baselines.keys()
    for name, scores in plain.baselines.items():
        assert cached.baselines[name].keys() == scores.keys()
        for baseline, values in scores.items():
            assert np.array_equal(cached.baselines[name][baseline], values), (name, baseline)


def _module(path: Path, cache_dir: Path | None, **settings) -> TextDataModule:
    options = {"batch_size": 2, "bptt": 4, "ngram_max_order": 3, "eval_streams": 3}
    options.update(settings)
    module = TextDataModule(
        file=str(path), cache_dir=str(cache_dir) if cache_dir else None, **options
    )
    module.setup()
    return module


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _entries(folder: Path, kind: str = "text") -> list[Path]:
    return sorted(folder.glob(f"{kind}-*"))


def test_the_shipped_corpus_gives_the_same_ids_and_scores_cached_and_not(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(default_corpus()[0], encoding="utf-8")
    plain = TextDataModule(file=str(path), cache_dir=None)
    plain.setup()
    assert plain.cache_state == "off"
    built = TextDataModule(file=str(path), cache_dir=str(tmp_path / "cache"))
    built.setup()
    reused = TextDataModule(file=str(path), cache_dir=str(tmp_path / "cache"))
    reused.setup()
    assert (built.cache_state, reused.cache_state) == ("built", "reused")
    assert isinstance(reused.ids["train"], np.memmap)
    _same(built, plain)
    _same(reused, plain)
    # and the file's text is the shipped corpus's: the same fingerprint as read from memory
    shipped = TextDataModule()
    shipped.setup()
    assert shipped.sha256 == plain.sha256
    assert np.array_equal(shipped.ids["test"], reused.ids["test"])


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 64])
def test_blocks_that_split_characters_give_the_text_and_its_ids(text_file, tmp_path, block):
    assert "".join(text_blocks(text_file, "utf-8", block_bytes=block)) == TEXT
    folder = tmp_path / "cache"
    folder.mkdir()
    corpus, _, built = text_cache.cached_corpus(
        folder, str(text_file), "utf-8", 1024, (0.1, 0.1), None, block_bytes=block
    )
    assert built
    whole = text_cache.from_text(TEXT, None, 0.1, 0.1)
    assert corpus.vocab.chars == whole.vocab.chars
    assert (corpus.digest, corpus.val_at, corpus.test_at) == (
        whole.digest,
        whole.val_at,
        whole.test_at,
    )
    assert corpus.ids.dtype == whole.ids.dtype and np.array_equal(corpus.ids, whole.ids)


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        ("ab€c".encode() * 5 + b"\xff" + b"tail", "utf-8"),  # an invalid byte past a block
        ("ab€c".encode() * 5 + "€".encode()[:2], "utf-8"),  # a character cut off at the end
        (b"plain text" * 3 + b"\x00 binary", "utf-8"),  # a NUL byte
        ("text with\x00 a NUL".encode("utf-16"), "utf-16"),  # a NUL character (UTF-16)
        ("\ufeffhello".encode("utf-16-le"), "utf-8"),  # UTF-16 read as UTF-8: the BOM named
        (b"\xff" + b"text " * 4 + b"\x00", "utf-8"),  # a NUL byte after an invalid byte
    ],
)
def test_a_streamed_text_is_refused_as_a_whole_one_is(tmp_path, content, encoding):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as whole:
        read_text(path, encoding)
    for block in (1, 3, 4, 1 << 20):
        with pytest.raises(DataError) as streamed:
            list(text_blocks(path, encoding, block_bytes=block))
        assert str(streamed.value) == str(whole.value)


def test_a_second_run_reuses_the_cache_without_building(text_file, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    first = _module(text_file, folder)
    assert first.cache_state == "built"
    assert len(_entries(folder)) == 1 and len(_entries(folder, "scores")) == 1

    def no_building(*args, **kwargs):
        raise AssertionError("the cache was built again")

    monkeypatch.setattr(text_cache, "_build", no_building)
    monkeypatch.setattr(text_cache, "fit_text_baselines", no_building)
    second = _module(text_file, folder)
    assert second.cache_state == "reused"
    _same(second, first)


def test_a_changed_file_or_setting_builds_a_new_entry(text_file, tmp_path):
    folder = tmp_path / "cache"
    _module(text_file, folder)
    text_file.write_text(TEXT + "x", encoding="utf-8")
    changed = _module(text_file, folder)
    assert changed.cache_state == "built" and len(_entries(folder)) == 2
    _same(changed, _module(text_file, None))
    other_split = _module(text_file, folder, val_fraction=0.2)
    assert other_split.cache_state == "built" and len(_entries(folder)) == 3
    _same(other_split, _module(text_file, None, val_fraction=0.2))
    # an n-gram setting shapes the scores, not the ids: the ids' entry is reused
    other_order = _module(text_file, folder, val_fraction=0.2, ngram_max_order=2)
    assert other_order.cache_state == "reused" and len(_entries(folder)) == 3
    assert len(_entries(folder, "scores")) == 4
    _same(other_order, _module(text_file, None, val_fraction=0.2, ngram_max_order=2))


def _damage_truncate(entry: Path) -> None:
    ids = entry / "ids.npy"
    ids.write_bytes(ids.read_bytes()[:-10])


def _damage_id_beyond_vocabulary(entry: Path) -> None:
    values = np.load(entry / "ids.npy")
    values[len(values) // 2] = np.iinfo(values.dtype).max
    np.save(entry / "ids.npy", values)


def _damage_pickle(entry: Path) -> None:
    np.save(entry / "ids.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _damage_dtype(entry: Path) -> None:
    np.save(entry / "ids.npy", np.load(entry / "ids.npy").astype(np.int64))


def _damage_meta(entry: Path) -> None:
    (entry / "meta.json").write_text("{not json")


def _damage_key(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["key"]["encoding"] = "latin-1"
    (entry / "meta.json").write_text(json.dumps(meta))


def _damage_missing(entry: Path) -> None:
    (entry / "ids.npy").unlink()


def _damage_vocabulary(entry: Path) -> None:
    """A vocabulary of 300 characters (two-byte ids) beside one-byte ids, consistently."""
    meta = json.loads((entry / "meta.json").read_text())
    meta["info"]["vocab"] = list(range(0x4E00, 0x4E00 + 300))
    (entry / "meta.json").write_text(json.dumps(meta))


def _damage_format(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    meta["format"] = cache.CACHE_FORMAT + 1
    (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_damage_truncate, "mmap length is greater than file size"),
        (_damage_vocabulary, "ids.npy is uint8 ("),
        (_damage_id_beyond_vocabulary, "an id beyond the vocabulary"),
        (_damage_pickle, "Array can't be memory-mapped: Python objects in dtype"),
        (_damage_dtype, "ids.npy is int64 ("),
        (_damage_meta, "Expecting property name"),
        (_damage_key, "its key differs"),
        (_damage_format, "written by another version"),
        (_damage_missing, "[Errno 2] No such file or directory"),
    ],
)
def test_a_damaged_text_entry_is_rebuilt_not_trusted(text_file, tmp_path, caplog, damage, reason):
    folder = tmp_path / "cache"
    _module(text_file, folder)
    (entry,) = _entries(folder)
    damage(entry)
    with caplog.at_level(logging.WARNING):
        again = _module(text_file, folder)
    assert again.cache_state == "built"
    (warning,) = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert warning.startswith(f"the data cache {entry} is damaged ({reason}")
    assert warning.endswith("): rebuilding it")
    _same(again, _module(text_file, None))
    assert _entries(folder) == [entry] and not list(folder.glob(".*"))


def test_a_damaged_scores_entry_is_rebuilt(text_file, tmp_path, caplog):
    folder = tmp_path / "cache"
    _module(text_file, folder)
    (entry,) = _entries(folder, "scores")
    np.save(entry / "val-ngram.npy", np.zeros(3))  # the wrong length
    with caplog.at_level(logging.WARNING):
        again = _module(text_file, folder)
    assert any("is damaged" in r.getMessage() for r in caplog.records)
    _same(again, _module(text_file, None))


def test_a_cache_dir_that_is_a_file_falls_back_with_a_warning(text_file, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        module = _module(text_file, blocker / "cache")
    assert module.cache_state == "off"
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "rnnlab.data.cache"]
    assert warning == (
        f"data.cache_dir={blocker / 'cache'} cannot be used (Not a directory): reading the data "
        "without the cache; set data.cache_dir to a writable folder, or null to silence this"
    )
    _same(module, _module(text_file, None))


def test_a_trained_models_vocabulary_reuses_the_entry_or_gets_its_own(text_file, tmp_path):
    folder = tmp_path / "cache"
    trained = _module(text_file, folder)
    same = TextDataModule(
        file=str(text_file), cache_dir=str(folder), batch_size=2, bptt=4, ngram_max_order=3
    )
    same.load_state_dict(trained.state_dict())
    same.setup()
    assert same.cache_state == "reused" and len(_entries(folder)) == 1
    other = Vocabulary(sorted(set(TEXT) - {"ß"}))
    corpus, _, built = text_cache.cached_corpus(
        folder, str(text_file), "utf-8", 1024, (0.05, 0.05), other
    )
    assert built and len(_entries(folder)) == 2
    assert np.array_equal(corpus.ids, other.compact_ids(TEXT))


def test_a_writer_that_loses_the_race_leaves_the_winners_entry(tmp_path, caplog):
    key = {"k": 1}
    name = cache.entry_name("test", key)
    first, second = (cache.EntryWriter(tmp_path, name, key) for _ in range(2))
    with first:
        first.save("values", np.arange(3))
        first.commit({"by": "first"})
    with second, caplog.at_level(logging.INFO):
        second.save("values", np.arange(3))
        second.commit({"by": "second"})
    written = f"the data cache {tmp_path / name} was written meanwhile by another process"
    assert written in [r.getMessage() for r in caplog.records]
    info, arrays = cache.load_entry(tmp_path, name, key)
    assert info == {"by": "first"} and arrays["values"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == [name]


def _build_in_process(path: str, folder: str, barrier, results) -> None:
    barrier.wait()
    corpus, name, _ = text_cache.cached_corpus(
        Path(folder), path, "utf-8", 1024, (0.1, 0.1), None, block_bytes=16
    )
    results.put((name, np.asarray(corpus.ids).tolist()))


def test_two_processes_building_at_once_end_with_one_valid_entry(text_file, tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(
            target=_build_in_process, args=(str(text_file), str(tmp_path), barrier, results)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    found = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    expected = text_cache.from_text(TEXT, None, 0.1, 0.1).ids.tolist()
    assert [ids for _, ids in found] == [expected, expected]
    assert [p.name for p in tmp_path.iterdir() if p.name != "text.txt"] == [found[0][0]]
    corpus, _, built = text_cache.cached_corpus(
        tmp_path, str(text_file), "utf-8", 1024, (0.1, 0.1), None
    )
    assert not built and corpus.ids.tolist() == expected


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")
def test_drop_pages_gives_back_what_a_pass_over_a_mapped_array_read(tmp_path):
    values = np.arange(1 << 25, dtype=np.uint16)  # 64 MiB
    np.save(tmp_path / "values.npy", values)
    mapped = np.load(tmp_path / "values.npy", mmap_mode="c")
    before = _resident_bytes()
    assert int(mapped.max()) == (1 << 16) - 1  # reads every page
    read = _resident_bytes()
    assert read - before > mapped.nbytes // 2
    cache.drop_pages(mapped[:10])  # a view gives back the whole mapping
    assert _resident_bytes() - before < mapped.nbytes // 4
    assert np.array_equal(mapped, values)  # read again from the file, unchanged
    cache.drop_pages(values)  # an array in memory: nothing to give back
    assert int(values[-1]) == (1 << 16) - 1


def test_two_byte_ids_are_checked_whole_whatever_the_read_size(tmp_path):
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 3  # 300 distinct: uint16 ids
    path = tmp_path / "wide.txt"
    path.write_text(text, encoding="utf-8")
    folder = tmp_path / "cache"
    folder.mkdir()
    settings = (folder, str(path), "utf-8", 1024, (0.1, 0.1), None)
    corpus, name, built = text_cache.cached_corpus(*settings, block_bytes=3)
    assert built and corpus.ids.dtype == np.uint16
    ids = np.load(folder / name / "ids.npy")
    ids[-1] = len(corpus.vocab)  # one past the largest id, in the last read
    np.save(folder / name / "ids.npy", ids)
    again, _, built = text_cache.cached_corpus(*settings, block_bytes=3)
    assert built and int(again.ids[-1]) < len(again.vocab)
    _, _, built = text_cache.cached_corpus(*settings, block_bytes=3)
    assert not built


def test_entry_names_follow_the_key_not_its_order():
    name = cache.entry_name("text", {"a": 1, "b": [2, 3]})
    assert name == cache.entry_name("text", {"b": [2, 3], "a": 1})
    assert name != cache.entry_name("text", {"a": 1, "b": [3, 2]})
    assert name != cache.entry_name("scores", {"a": 1, "b": [2, 3]})
    assert len(name) == len("text-") + 32 and int(name[5:], 16) >= 0


def test_an_entry_is_checked_against_its_own_shapes_and_never_pickles(tmp_path):
    key = {"k": 1}
    name = cache.entry_name("test", key)
    with cache.EntryWriter(tmp_path, name, key) as writer:
        writer.save("values", np.arange(6, dtype=np.int32))
        with pytest.raises(ValueError, match="pickle"):
            writer.save("objects", np.array([{}, None], dtype=object))
        writer.commit({})
    info, arrays = cache.load_entry(tmp_path, name, key)
    assert info == {} and list(arrays) == ["values"]
    assert arrays["values"].tolist() == list(range(6)) and arrays["values"].dtype == np.int32
    np.save(tmp_path / name / "values.npy", np.arange(5, dtype=np.int32))  # same dtype, shorter
    assert cache.load_entry(tmp_path, name, key) is None
    assert not (tmp_path / name).exists()


def test_a_cache_dir_is_created_with_its_parents(text_file, tmp_path):
    folder = tmp_path / "a" / "b" / "cache"
    assert _module(text_file, folder).cache_state == "built"
    assert len(_entries(folder)) == 1


def _rewrite_meta(entry: Path, change) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    change(meta)
    (entry / "meta.json").write_text(json.dumps(meta))


def _scores_short(entry: Path) -> None:
    """val's n-gram scores three long, file and metadata agreeing."""
    np.save(entry / "val-ngram.npy", np.zeros(3))
    _rewrite_meta(entry, lambda meta: meta["arrays"]["val-ngram"].__setitem__(1, [3]))


def _scores_missing(entry: Path) -> None:
    (entry / "test-ngram.npy").unlink()
    _rewrite_meta(entry, lambda meta: meta["arrays"].pop("test-ngram"))


def _scores_order(entry: Path) -> None:
    _rewrite_meta(entry, lambda meta: meta["info"].__setitem__("order", "six"))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_scores_short, "(val-ngram.npy is float64 (3,))"),
        (_scores_missing, "(it holds ['test-unigram', 'val-ngram', 'val-unigram'])"),
        (_scores_order, "(the n-gram order is not a number)"),
    ],
)
def test_scores_that_do_not_fit_the_text_are_rebuilt(text_file, tmp_path, caplog, damage, reason):
    folder = tmp_path / "cache"
    _module(text_file, folder)
    (entry,) = _entries(folder, "scores")
    damage(entry)
    with caplog.at_level(logging.WARNING):
        again = _module(text_file, folder)
    (warning,) = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert warning == f"the data cache {entry} is damaged {reason}: rebuilding it"
    _same(again, _module(text_file, None))


def test_the_cache_is_read_and_written_in_blocks_with_the_runs_settings(
    text_file, tmp_path, monkeypatch
):
    calls: list[tuple] = []
    for name in ("text_blocks", "file_blocks", "fit_text_baselines"):
        real = getattr(text_cache, name)

        def spy(*args, _real=real, _name=name):
            calls.append((_name, *args[1:]))
            return _real(*args)

        monkeypatch.setattr(text_cache, name, spy)
    folder = tmp_path / "cache"
    folder.mkdir()
    text_cache.cached_corpus(folder, str(text_file), "utf-8", 5, (0.1, 0.1), None, block_bytes=7)
    assert calls == [("file_blocks", 5, 7)] + [("text_blocks", "utf-8", 5, 7)] * 3
    calls.clear()
    module = TextDataModule(
        file=str(text_file), cache_dir=str(folder), batch_size=2, bptt=4, ngram_max_order=3, seed=4
    )
    module.load_state_dict({**_module(text_file, None).state_dict(), "ngram_order": 2})
    calls.clear()
    module.setup()
    fits = [call[2:] for call in calls if call[0] == "fit_text_baselines"]
    assert fits == [(3, 2, module.ngram_fit_chars, 4)] and module.ngram_order == 2
    # the scores are mapped from the cache from the run that wrote them on
    assert all(isinstance(v, np.memmap) for p in module.baselines.values() for v in p.values())


def test_a_cached_file_over_the_size_limit_is_still_refused(text_file, tmp_path):
    folder = tmp_path / "cache"
    _module(text_file, folder)
    with pytest.raises(DataError, match=r"over data\.max_file_mb=0\.0001 MiB"):
        _module(text_file, folder, max_file_mb=0.0001)


@pytest.mark.parametrize("block", [1, 3, 1 << 20])
def test_the_vocabulary_is_the_train_parts_to_its_last_character(tmp_path, block):
    # 425 train characters ending with the only Z, 50 of val opening with the only V, 25 of
    # test: a block that holds both Z and V adds Z to the vocabulary, not V
    text = "ab" * 212 + "Z" + "V" + "ab" * 24 + "a" + "ab" * 12 + "a"
    path = tmp_path / "edge.txt"
    path.write_text(text, encoding="utf-8")
    folder = tmp_path / "cache"
    folder.mkdir()
    corpus, _, _ = text_cache.cached_corpus(
        folder, str(path), "utf-8", 1024, (0.1, 0.05), None, block_bytes=block
    )
    assert text[corpus.val_at - 1] == "Z" and "V" in text[corpus.val_at : corpus.test_at]
    assert corpus.vocab.chars == ["Z", "a", "b"]


def test_the_cache_says_what_it_does(text_file, tmp_path, caplog):
    folder = tmp_path / "cache"
    caplog.set_level(logging.DEBUG, logger="rnnlab")
    _module(text_file, folder)
    (entry,) = _entries(folder)
    where = f"data.file={text_file}"
    for step in (
        f"{where}: its SHA-256, the cache's key ...",
        f"{where}: counting its characters for the cache ...",
        "finding the training text's characters ...",
        f"encoding {len(TEXT):,} characters as uint8 ids ...",
    ):
        assert step in caplog.messages
    assert f"{where}: character ids cached in {entry}" in caplog.messages
    caplog.clear()
    _module(text_file, folder)
    (scores,) = _entries(folder, "scores")
    assert f"{where}: character ids read from the cache {entry}" in caplog.messages
    assert f"the baselines' scores of val and test read from the cache {scores}" in caplog.messages


def _refusal(call) -> str:
    with pytest.raises(DataError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize("case", ["missing", "directory", "fifo", "over", "exactly", "proc"])
def test_a_streamed_file_is_refused_as_read_input_refuses_it(tmp_path, case):
    path, limit = tmp_path / "text.txt", 1024.0
    if case == "directory":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    elif case in ("over", "exactly"):
        path.write_bytes(b"a" * ((1 << 20) + (case == "over")))
        limit = 1.0
    elif case == "proc":
        path, limit = Path("/proc/self/maps"), 0.0001  # reports 0 bytes, holds more
    whole = _refusal(lambda: read_text(path, "utf-8", limit)) if case != "exactly" else None
    for size in (1 << 10, 1 << 20):
        if whole is None:  # exactly at the limit: read, not refused
            assert sum(len(b) for b in text_cache.file_blocks(path, limit, size)) == 1 << 20
            continue
        streamed = _refusal(lambda size=size: list(text_blocks(path, "utf-8", limit, size)))
        hashed = _refusal(lambda size=size: text_cache.file_sha256(str(path), limit, size))
        assert streamed == hashed == whole

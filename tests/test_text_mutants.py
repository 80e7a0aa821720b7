"""The character language model's data, value by value: the streams and windows of truncated
BPTT (``data.streams``), the corpus, its fingerprint and vocabulary (``data.corpus``) and the
DataModule's split, encoding and loaders (``data.text``), called directly on tiny inputs and
checked against values written out by hand. Deterministic and fast; the tests that train a model
on this data are in tests/test_charlm.py."""

from __future__ import annotations

import codecs
import hashlib
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.data import corpus, text_cache
from rnnlab.data import text as text_module
from rnnlab.data.corpus import (
    Vocabulary,
    WideIds,
    characters_of,
    code_points,
    default_corpus,
    fingerprint,
    read_text,
)
from rnnlab.data.dedup import deduplicate
from rnnlab.data.streams import (
    Chunks,
    check_part_sizes,
    fixed_windows,
    one_batch,
    rank_rows,
    row_lengths,
    to_rows,
)
from rnnlab.data.text import TextDataModule
from rnnlab.utils.errors import ConfigError, DataError

IGNORE = -1

# --- streams ---------------------------------------------------------------------------------


def test_to_rows_cuts_contiguous_rows_and_pads_the_last():
    rows = to_rows(np.arange(1, 8, dtype=np.uint8), 3, 0)
    assert rows.dtype == torch.uint8
    assert rows.tolist() == [[1, 2, 3], [4, 5, 6], [7, 0, 0]]
    assert to_rows(np.arange(1, 7), 3, -5).tolist() == [[1, 2], [3, 4], [5, 6]]
    # more rows than values: one value a row, then rows of padding
    assert to_rows(np.array([4.0, 5.0]), 4, 0.5).tolist() == [[4.0], [5.0], [0.5], [0.5]]
    assert to_rows(np.zeros(0, dtype=np.int64), 2, 9).tolist() == [[9], [9]]


def test_row_lengths_count_what_to_rows_fills():
    assert row_lengths(7, 3).tolist() == [3, 3, 1]
    assert row_lengths(6, 3).tolist() == [2, 2, 2]
    assert row_lengths(2, 4).tolist() == [1, 1, 0, 0]
    assert row_lengths(0, 2).tolist() == [0, 0]
    assert row_lengths(7, 3).dtype == torch.int64
    for total in range(12):
        for rows in range(1, 6):
            filled = to_rows(np.ones(total, dtype=np.int64), rows, 0).sum(dim=1)
            assert row_lengths(total, rows).tolist() == filled.tolist()


def test_fixed_windows_cover_the_total_the_last_one_shorter():
    assert fixed_windows(7, 3) == [3, 3, 1]
    assert fixed_windows(6, 3) == [3, 3]
    assert fixed_windows(2, 5) == [2]
    assert fixed_windows(0, 3) == []


def test_one_batch_hands_the_batch_over_as_it_is():
    batch = object()
    assert one_batch(batch) is batch


def test_chunks_yield_window_i_of_every_stream_masked_by_lengths():
    inputs = torch.arange(10, dtype=torch.uint8).view(2, 5)
    targets = (torch.arange(10, dtype=torch.uint8) + 1).view(2, 5)
    nll = torch.arange(10, dtype=torch.float64).view(2, 5) / 10
    plan = [2, 2, 1]
    chunks = Chunks(inputs, targets, {"unigram": nll}, lambda: plan, torch.tensor([5, 3]))
    assert len(chunks) == 3
    batches = list(chunks)
    assert [b.x.tolist() for b in batches] == [[[0, 1], [5, 6]], [[2, 3], [7, 8]], [[4], [9]]]
    assert all(b.x.dtype == b.y.dtype == torch.int64 for b in batches)
    assert [b.y.tolist() for b in batches] == [
        [[1, 2], [6, 7]],
        [[3, 4], [8, IGNORE]],
        [[5], [IGNORE]],
    ]
    assert [b.lengths.tolist() for b in batches] == [[2, 2], [2, 1], [1, 0]]
    assert [b.baselines["unigram"].tolist() for b in batches] == [
        [[0.0, 0.1], [0.5, 0.6]],
        [[0.2, 0.3], [0.7, 0.8]],
        [[0.4], [0.9]],
    ]
    assert targets.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]  # held as they were
    assert [b.y.tolist() for b in chunks] == [b.y.tolist() for b in batches]  # a second pass
    plan = [4, 1]  # read at each pass
    assert len(chunks) == 2
    assert [b.lengths.tolist() for b in chunks] == [[4, 3], [1, 0]]


def test_chunks_without_lengths_count_every_target_not_ignored():
    inputs = torch.zeros(2, 4, dtype=torch.int64)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, IGNORE, IGNORE]])
    batches = list(Chunks(inputs, targets, {}, lambda: [3, 1]))
    assert [b.lengths.tolist() for b in batches] == [[3, 2], [1, 0]]
    assert [b.y.tolist() for b in batches] == [[[1, 2, 3], [5, 6, IGNORE]], [[4], [IGNORE]]]
    assert batches[0].baselines == {}


def test_rank_rows_gives_each_rank_a_contiguous_block_padded_to_divide():
    rows = torch.arange(10).view(5, 2)
    assert rank_rows(rows, 2, 0, -1).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert rank_rows(rows, 2, 1, -1).tolist() == [[6, 7], [8, 9], [-1, -1]]
    assert rank_rows(rows, 1, 0, -1).tolist() == rows.tolist()
    assert rank_rows(rows, 5, 4, -1).tolist() == [[8, 9]]
    lengths = torch.tensor([3, 3, 1])
    assert rank_rows(lengths, 2, 1, 0).tolist() == [1, 0]
    assert rank_rows(lengths, 4, 3, 0).tolist() == [0]


def test_part_sizes_at_the_limits():
    check_part_sizes({"train": 12, "val": 2, "test": 2}, "here", batch_size=3, bptt=3)
    with pytest.raises(DataError) as caught:
        check_part_sizes({"train": 11, "val": 2, "test": 2}, "here", batch_size=3, bptt=3)
    assert str(caught.value) == (
        "here: the train part has 11 characters, fewer than data.batch_size x (data.bptt + 1) "
        "= 12; use a longer text or lower batch_size or bptt"
    )
    for name in ("val", "test"):
        sizes = {"train": 12, "val": 2, "test": 2, name: 1}
        with pytest.raises(DataError) as caught:
            check_part_sizes(sizes, "there", batch_size=3, bptt=3)
        assert str(caught.value) == (
            f"there: the {name} part has 1 characters (at least 2 needed); use a longer text "
            f"or a larger data.{name}_fraction"
        )


# --- corpus ----------------------------------------------------------------------------------


def test_the_default_corpus_is_the_topics_in_sorted_order_deduplicated():
    from pydoc_data.topics import topics

    text, where = default_corpus()
    joined = "\n\n".join(topics[key] for key in sorted(topics))
    assert text == deduplicate(joined).text
    first, second = sorted(topics)[:2]  # nothing before them to repeat
    assert text.startswith(topics[first] + "\n\n" + topics[second] + "\n\n")
    assert 0.7 * len(joined) < len(text) < 0.9 * len(joined)  # 81 % in Python 3.11
    version = ".".join(map(str, sys.version_info[:3]))
    assert where == f"pydoc_data.topics (Python {version}), de-duplicated"


def test_byte_order_marks_utf32_before_utf16():
    mark = corpus._byte_order_mark
    assert mark(codecs.BOM_UTF32_LE + b"a") == "utf-32"
    assert mark(codecs.BOM_UTF32_BE + b"a") == "utf-32"
    assert mark(codecs.BOM_UTF16_LE + b"a\x00") == "utf-16"
    assert mark(codecs.BOM_UTF16_BE + b"\x00a") == "utf-16"
    assert mark(b"plain") is None


def test_encodings_are_checked_by_name_and_kind():
    assert corpus._check_encoding("UTF8").name == "utf-8"
    with pytest.raises(ConfigError) as caught:
        corpus._check_encoding("no-such-codec")
    assert str(caught.value) == "data.encoding='no-such-codec' is not an encoding Python knows"
    with pytest.raises(ConfigError) as caught:
        corpus._check_encoding("base64")
    assert str(caught.value) == "data.encoding='base64' is not a text encoding"


def test_nul_is_one_zero_byte_in_utf8_and_latin1_only():
    one = corpus._nul_is_one_zero_byte
    assert one(codecs.lookup("utf-8")) and one(codecs.lookup("latin-1"))
    assert not one(codecs.lookup("utf-16")) and not one(codecs.lookup("utf-7"))


def test_read_text_reads_and_refuses_exactly(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("héllo\n".encode())
    assert read_text(good, "utf-8") == "héllo\n"
    assert read_text(good, "latin-1") == "hÃ©llo\n"
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"abc\x00def")
    with pytest.raises(DataError) as caught:
        read_text(binary, "utf-8")
    assert str(caught.value) == (
        f"data.file={binary} looks binary (a NUL byte at offset 3); give a text file (UTF-16 "
        "or UTF-32 text needs data.encoding=utf-16 or utf-32)"
    )
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("hi".encode("utf-16"))
    with pytest.raises(DataError) as caught:
        read_text(utf16, "utf-8")
    assert str(caught.value) == (
        f"data.file={utf16} looks binary (a NUL byte at offset 3); it looks like utf-16 text "
        "(it starts with a byte-order mark): set data.encoding=utf-16"
    )
    assert read_text(utf16, "utf-16") == "hi"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ab\xffcd")
    with pytest.raises(DataError) as caught:
        read_text(bad, "utf-8")
    assert str(caught.value) == (
        f"data.file={bad}: the byte at offset 2 is not valid utf-8; set data.encoding to the "
        "file's encoding (e.g. latin-1)"
    )
    with pytest.raises(DataError) as caught:
        read_text(bad, "utf-8", encoding_advice="convert it")
    assert (
        str(caught.value) == f"data.file={bad}: the byte at offset 2 is not valid utf-8; convert it"
    )
    nul16 = tmp_path / "nul16.txt"
    nul16.write_bytes("ab\x00c".encode("utf-16"))
    with pytest.raises(DataError) as caught:
        read_text(nul16, "utf-16")
    assert str(caught.value) == (
        f"data.file={nul16} looks binary (a NUL character at character 2 in utf-16); give a "
        "text file"
    )


def test_read_text_passes_the_limit_and_its_advice_on(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (1 << 20) + b"b")
    with pytest.raises(DataError, match="raise it here"):
        read_text(big, "utf-8", max_file_mb=1, limit_advice="raise it here")
    assert len(read_text(big, "utf-8", max_file_mb=2)) == (1 << 20) + 1


def test_fingerprint_is_the_sha256_of_the_utf8_bytes_in_any_chunks(monkeypatch):
    text = "abc\u00e9\ud800xyz" * 3  # a lone surrogate passes
    expected = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    assert fingerprint(text) == expected
    monkeypatch.setattr(corpus, "_CHUNK", 4)
    assert fingerprint(text) == expected
    assert fingerprint("") == hashlib.sha256(b"").hexdigest()


def test_code_points():
    codes = code_points("a\u00e9\u20ac\U0001f600")
    assert codes.dtype == np.dtype("<u4")
    assert codes.tolist() == [97, 233, 8364, 128512]
    assert code_points("a\ud800").tolist() == [97, 0xD800]  # a lone surrogate passes


@pytest.mark.parametrize("chunk", [1 << 24, 3, 1])
def test_characters_of_a_slice_sorted_in_any_chunks(monkeypatch, chunk):
    monkeypatch.setattr(corpus, "_CHUNK", chunk)
    text = "bca\u20acab z\u00e9b"
    assert characters_of(text) == sorted(set(text))
    assert characters_of(text, 1, 4) == ["a", "c", "\u20ac"]
    assert characters_of(text, 4) == sorted(set(text[4:]))
    assert characters_of(text, 2, 2) == []


def test_vocabulary_ids_lengths_and_decoding():
    vocab = Vocabulary.of("hello world", 0, 5)  # the characters of "hello" only
    assert vocab.chars == ["e", "h", "l", "o"] and len(vocab) == 5
    assert vocab.ids == {"e": 1, "h": 2, "l": 3, "o": 4}
    assert vocab.encode("hole!").tolist() == [2, 4, 3, 1, 0]
    assert vocab.encode("hole!").dtype == np.int64
    assert vocab.decode([2, 1, 0, 4]) == "he\ufffdo"
    assert Vocabulary.of("cab").chars == ["a", "b", "c"]


def test_vocabulary_dtype_is_the_smallest_that_holds_every_id():
    def of_size(n: int) -> Vocabulary:  # n ids: n - 1 characters and <unk>
        return Vocabulary([chr(0x100 + i) for i in range(n - 1)])

    assert of_size(1 << 8).dtype == np.uint8
    assert of_size((1 << 8) + 1).dtype == np.uint16
    assert of_size(1 << 16).dtype == np.uint16
    assert of_size((1 << 16) + 1).dtype == np.uint32


@pytest.mark.parametrize("chunk", [1 << 24, 2])
def test_compact_ids_of_a_slice_unknown_characters_0(monkeypatch, chunk):
    monkeypatch.setattr(corpus, "_CHUNK", chunk)
    vocab = Vocabulary(["a", "c", "\u00e9"])
    text = "xaca\u00e9b\u00ff\u20acc"  # b below the top code, \u00ff and \u20ac above it
    ids = vocab.compact_ids(text)
    assert ids.dtype == np.uint8
    assert ids.tolist() == [0, 1, 2, 1, 3, 0, 0, 0, 2]
    assert vocab.compact_ids(text, 2, 7).tolist() == [2, 1, 3, 0, 0]
    assert vocab.compact_ids(text, 4).tolist() == [3, 0, 0, 0, 2]
    assert vocab.compact_ids(text, 5, 5).tolist() == []
    assert Vocabulary([]).compact_ids("ab").tolist() == [0, 0]


def test_the_unknown_stand_in_is_the_first_private_use_character_not_in_the_text():
    assert Vocabulary(["a"]).unknown == "\ue000"
    assert Vocabulary(["a", "\ue000", "\ue001", "\ue003"]).unknown == "\ue002"
    vocab = Vocabulary(["a", "\ue000"])
    assert vocab.known("ab\ue000c") == "a\ue001\ue000\ue001"


def test_wide_ids_read_each_part_as_int64():
    held = {"train": np.array([1, 2], dtype=np.uint8), "val": np.array([3], dtype=np.uint16)}
    wide = WideIds(held)
    assert len(wide) == 2 and list(wide) == ["train", "val"]
    assert wide["train"].dtype == np.int64 and wide["train"].tolist() == [1, 2]
    assert wide["val"].tolist() == [3]
    assert held["train"].dtype == np.uint8


# --- the DataModule --------------------------------------------------------------------------

# 103 characters: with val and test fractions of 0.1, round(20.6) = 21 and round(10.3) = 10
# characters are held out, so train is [:82], val [82:93] and test [93:]; X and Z are unseen
TEXT = ("the cat sat on a mat. " * 4)[:82] + "a cat X sat" + "the Zat sa"
assert len(TEXT) == 103


def _module(tmp_path, text: str = TEXT, **settings) -> TextDataModule:
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    options = {"batch_size": 2, "bptt": 3, "val_fraction": 0.1, "test_fraction": 0.1}
    options.update(ngram_max_order=2, eval_streams=3)
    options.update(settings)
    return TextDataModule(file=str(path), **options)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bptt": 0}, "data.bptt must be >= 1, got 0"),
        ({"eval_streams": 0}, "data.eval_streams must be >= 1, got 0"),
        ({"ngram_fit_chars": 999}, "data.ngram_fit_chars must be >= 1000, got 999"),
        (
            {"ngram_max_order": 1},
            "data.ngram_max_order must be 0 (no n-gram baseline) or >= 2, got 1",
        ),
        (
            {"ngram_max_order": -1},
            "data.ngram_max_order must be 0 (no n-gram baseline) or >= 2, got -1",
        ),
        ({"val_fraction": 0.0}, None),
        ({"val_fraction": 1.0}, None),
        ({"test_fraction": 0.0}, None),
        ({"test_fraction": 1.0}, None),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, None),
    ],
)
def test_settings_out_of_range_are_refused_exactly(settings, message):
    fractions = "data.val_fraction and data.test_fraction must be in (0, 1) with a sum below 1"
    with pytest.raises(ConfigError) as caught:
        TextDataModule(**settings)
    assert str(caught.value) == (message or fractions)


def test_settings_at_the_limits_are_taken():
    data = TextDataModule(
        bptt=1,
        eval_streams=1,
        ngram_fit_chars=1000,
        ngram_max_order=0,
        val_fraction=0.4,
        test_fraction=0.5,
    )
    assert (data.bptt, data.eval_streams, data.ngram_fit_chars) == (1, 1, 1000)
    assert (data.val_fraction, data.test_fraction, data.ngram_max_order) == (0.4, 0.5, 0)
    assert TextDataModule(ngram_max_order=2).ngram_max_order == 2


def test_setup_splits_contiguously_with_the_vocabulary_of_the_train_part(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="rnnlab")
    data = _module(tmp_path)
    assert data.state_dict() == {}
    data.setup()
    assert data.vocab is not None
    assert data.vocab.chars == sorted(set(TEXT[:82]))
    decoded = {name: data.vocab.decode(ids.tolist()) for name, ids in data.ids.items()}
    unk = "\ufffd"
    assert decoded == {
        "train": TEXT[:82],
        "val": TEXT[82:93].replace("X", unk),
        "test": TEXT[93:].replace("Z", unk),
    }
    assert all(ids.dtype == np.uint8 for ids in data.ids.values())
    assert data.parts["val"].dtype == np.int64
    where = f"data.file={tmp_path / 'corpus.txt'}"
    for name in ("val", "test"):
        assert (
            f"{where}: 1 characters of the {name} part are not in the training text "
            "(scored as <unk>)" in caplog.text
        )
    sha = hashlib.sha256(TEXT.encode()).hexdigest()
    said = f"{where}: 82/11/10 characters (train/val/test), {len(data.vocab)} symbols, "
    assert said + f"SHA-256 {sha[:12]}" in [r.getMessage() for r in caplog.records]
    assert data.state_dict() == {
        "vocab": [ord(c) for c in sorted(set(TEXT[:82]))],
        "sha256": sha,
        "ngram_order": 2,
    }
    assert data.model_settings() == {"vocab_size": len(set(TEXT[:82])) + 1}
    assert data.baseline_names() == ("unigram", "ngram")
    assert data.data_metrics() == {"data/train_chars": 82.0, "data/ngram_fit_chars": 82.0}
    assert data.opening("val", 4) == "a ca"
    assert data.opening("train") == TEXT[:40]
    assert set(data.baselines) == {"val", "test"}
    assert len(data.baselines["val"]["unigram"]) == len(data.baselines["val"]["ngram"]) == 10


def test_a_text_without_unseen_characters_warns_of_none(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="rnnlab")
    _module(tmp_path, text=TEXT.replace("X", "a").replace("Z", "t")).setup()
    assert "not in the training text" not in caplog.text


def test_setup_runs_once(tmp_path):
    data = _module(tmp_path)
    data.setup()
    ids = data.ids
    (tmp_path / "corpus.txt").write_text("changed " * 20, encoding="utf-8")
    data.setup()
    assert data.ids is ids


def test_a_restored_module_keeps_its_vocabulary_and_refuses_another_text(tmp_path):
    data = _module(tmp_path)
    data.setup()
    state = data.state_dict()
    restored = _module(tmp_path, ngram_max_order=3)
    restored.load_state_dict({**state, "vocab": [ord(c) for c in "ace"]})
    assert restored.ngram_order == 2
    restored.setup()
    assert restored.vocab is not None and restored.vocab.chars == ["a", "c", "e"]
    assert restored.ngram_order == 2  # the stored order, not one chosen again
    assert restored.opening("train", 6) == "\ufffd\ufffde\ufffdca"
    assert restored.state_dict()["sha256"] == state["sha256"]
    other = _module(tmp_path, text=TEXT.replace("cat", "dog"))
    other.load_state_dict(state)
    digest = hashlib.sha256(TEXT.replace("cat", "dog").encode()).hexdigest()
    with pytest.raises(DataError) as caught:
        other.setup()
    assert str(caught.value) == (
        f"data.file={tmp_path / 'corpus.txt'} is not the text this model was trained on "
        f"(SHA-256 {digest[:12]}, expected {state['sha256'][:12]}); restore that text, or train "
        "a new model"
    )


def test_loading_a_state_keeps_the_ids_only_when_vocabulary_and_text_are_the_same(tmp_path):
    data = _module(tmp_path)
    data.setup()
    state = data.state_dict()
    data.load_state_dict(dict(state))
    assert data.ids
    data.load_state_dict({**state, "sha256": "0" * 64})
    assert data.ids == {} and data.sha256 == "0" * 64
    data.load_state_dict(state)
    data.ids = {"train": np.zeros(1, dtype=np.uint8)}
    data.load_state_dict({**state, "vocab": state["vocab"][:-1]})
    assert data.ids == {}
    skipped = {k: v for k, v in state.items() if k != "ngram_order"}
    data.load_state_dict(skipped)
    assert data.ngram_order is None


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"vocab": "abc"}, TypeError, "vocab must be a list of code points"),
        ({"vocab": [97, 0]}, TypeError, "vocab must be a list of code points"),
        ({"vocab": [97, sys.maxunicode + 1]}, TypeError, "vocab must be a list of code points"),
        ({"vocab": [97, 98.0]}, TypeError, "vocab must be a list of code points"),
        ({"vocab": [97, 98, 97]}, ValueError, "vocab holds a character twice, or NUL"),
        ({"sha256": 12}, TypeError, "sha256 must be a string and ngram_order an integer"),
        ({"ngram_order": "2"}, TypeError, "sha256 must be a string and ngram_order an integer"),
    ],
)
def test_a_bad_state_is_refused(change, error, message):
    state = {"vocab": [97, 98], "sha256": "ab", "ngram_order": 3, **change}
    data = TextDataModule()
    with pytest.raises(error) as caught:
        data.load_state_dict(state)
    assert str(caught.value) == message
    assert data.vocab is None


def test_the_highest_code_point_is_a_vocabulary_character():
    data = TextDataModule()
    data.load_state_dict({"vocab": [1, sys.maxunicode], "sha256": "ab"})
    assert data.vocab is not None and data.vocab.chars == ["\x01", chr(sys.maxunicode)]
    assert data.ngram_order is None


def test_a_test_file_is_scored_with_the_training_vocabulary(tmp_path):
    data = _module(tmp_path)
    data.setup()
    other = tmp_path / "other.txt"
    other.write_text("a mat Q", encoding="utf-8")
    data.use_test_file(str(other))
    assert data.ids == {} and data.test_file == str(other.resolve())
    data.setup()
    assert data.vocab is not None
    assert data.vocab.decode(data.ids["test"].tolist()) == "a mat \ufffd"
    assert data.vocab.decode(data.ids["val"].tolist()) == TEXT[82:93].replace("X", "\ufffd")
    assert len(data.baselines["test"]["unigram"]) == 6
    latin = tmp_path / "latin.txt"
    latin.write_bytes("a m\u00e4t".encode("latin-1"))
    data.use_test_file(str(latin))
    with pytest.raises(DataError) as caught:
        data.setup()
    assert str(caught.value) == (
        f"data.file={latin.resolve()}: the byte at offset 3 is not valid utf-8; this model reads "
        "texts as utf-8, as its training text was: convert the file to utf-8 (e.g. iconv -f "
        "latin-1 -t utf-8)"
    )
    data.use_test_file(str(latin), encoding="latin-1")
    assert data.test_encoding == "latin-1"
    data.setup()
    assert data.vocab.decode(data.ids["test"].tolist()) == "a m\ufffdt"


def test_a_test_file_too_short_is_named(tmp_path):
    data = _module(tmp_path)
    data.setup()
    short = tmp_path / "short.txt"
    short.write_text("a", encoding="utf-8")
    data.use_test_file(str(short))
    with pytest.raises(DataError) as caught:
        data.setup()
    assert str(caught.value).startswith(f"data.file={short.resolve()}: the test part has 1 ")


def test_the_default_corpus_is_read_without_a_file(monkeypatch):
    monkeypatch.setattr(text_module, "default_corpus", lambda: (TEXT, "the default"))
    data = TextDataModule(batch_size=2, bptt=3, val_fraction=0.1, test_fraction=0.1)
    assert data.source() == (TEXT, "the default")


def _recipe(bptt: int, seed: int, epoch: int, total: int) -> list[int]:
    """The word language model's random truncation lengths, written out."""
    rng = np.random.default_rng([seed, epoch])
    sizes: list[int] = []
    while sum(sizes) < total:
        mean = bptt if rng.random() < 0.95 else bptt / 2
        sizes.append(min(max(5, round(rng.normal(mean, 5))), total - sum(sizes)))
    return sizes


def test_window_plans_fixed_and_random():
    fixed = TextDataModule(bptt=4)
    assert fixed.window_plan(10, epoch=3) == [4, 4, 2]
    data = TextDataModule(bptt=12, random_bptt=True, seed=5)
    plans = {epoch: data.window_plan(3000, epoch) for epoch in range(3)}
    for epoch, plan in plans.items():
        assert plan == _recipe(12, 5, epoch, 3000) and sum(plan) == 3000
        assert min(plan[:-1]) == 5 and max(plan) > 12  # the floor is reached, noise above bptt
    assert plans[0] != plans[1]
    assert TextDataModule(bptt=12, random_bptt=True, seed=6).window_plan(3000, 0) != plans[0]
    assert data.window_plan(7, 0) == _recipe(12, 5, 0, 7)
    assert data.window_plan(0, 0) == []


def test_the_train_loader_reads_batch_size_streams_in_consecutive_windows(tmp_path):
    data = _module(tmp_path)
    data.setup()
    train = data.parts["train"]  # 82 ids: 2 streams of (82 - 1) // 2 = 40
    batches = list(data.train_dataloader())
    assert [b.x.shape[1] for b in batches] == [3] * 13 + [1]
    x = torch.cat([b.x for b in batches], dim=1)
    y = torch.cat([b.y for b in batches], dim=1)
    assert x.tolist() == [train[:40].tolist(), train[40:80].tolist()]
    assert y.tolist() == [train[1:41].tolist(), train[41:81].tolist()]
    assert all(b.lengths.tolist() == [b.x.shape[1]] * 2 for b in batches)
    assert all(b.baselines == {} for b in batches)


def test_each_rank_reads_its_own_block_of_streams(tmp_path, monkeypatch):
    data = _module(tmp_path, batch_size=2)
    data.setup()
    train = data.parts["train"]  # 2 ranks x 2 streams of (82 - 1) // 4 = 20
    monkeypatch.setattr(data, "_world", lambda: (2, 1))
    batches = list(data.train_dataloader())
    x = torch.cat([b.x for b in batches], dim=1)
    y = torch.cat([b.y for b in batches], dim=1)
    assert x.tolist() == [train[40:60].tolist(), train[60:80].tolist()]
    assert y.tolist() == [train[41:61].tolist(), train[61:81].tolist()]


def test_the_train_loader_follows_the_epoch(tmp_path, monkeypatch):
    data = _module(tmp_path, bptt=6, random_bptt=True)
    data.setup()
    assert data._epoch() == 0
    monkeypatch.setattr(data, "_epoch", lambda: 4)
    loader = data.train_dataloader()
    assert [b.x.shape[1] for b in loader] == _recipe(6, 0, 4, 40)


def test_too_many_streams_for_the_train_part_are_refused(tmp_path, monkeypatch):
    data = _module(tmp_path)
    data.setup()
    monkeypatch.setattr(data, "_world", lambda: (40, 0))
    assert len(data.train_dataloader()) == 1  # 82 characters: 80 streams of 1
    monkeypatch.setattr(data, "_world", lambda: (41, 0))
    with pytest.raises(DataError) as caught:
        data.train_dataloader()
    assert str(caught.value) == (
        "the train part has 82 characters, too few for 41 processes x data.batch_size=2 "
        "streams; lower data.batch_size"
    )


def test_the_eval_loaders_score_every_character_from_the_second_once(tmp_path):
    data = _module(tmp_path)
    data.setup()
    # val: 10 scored characters in 3 rows of 4 (4, 4, 2 filled), windows of bptt 3 and 1;
    # test: 9 in 3 rows of 3, one window
    for name, shapes, rows in (("val", [(3, 3), (3, 1)], [4, 4, 2]), ("test", [(3, 3)], [3] * 3)):
        ids = data.parts[name]
        loader = data.val_dataloader() if name == "val" else data.test_dataloader()
        batches = list(loader)
        assert [tuple(b.x.shape) for b in batches] == shapes
        lengths = torch.stack([b.lengths for b in batches], dim=1).sum(dim=1)
        assert lengths.tolist() == rows
        scored = len(ids) - 1
        x = torch.cat([b.x for b in batches], dim=1)
        y = torch.cat([b.y for b in batches], dim=1)
        masked = y[y != IGNORE].tolist()
        assert masked == ids[1:].tolist()
        assert x.flatten()[:scored].tolist() == ids[:-1].tolist()
        for baseline in ("unigram", "ngram"):
            values = torch.cat([b.baselines[baseline] for b in batches], dim=1)
            expected = data.baselines[name][baseline]
            assert values[y != IGNORE].tolist() == expected.tolist()


def test_each_rank_scores_its_block_of_the_eval_rows(tmp_path, monkeypatch):
    data = _module(tmp_path, eval_streams=3)
    data.setup()
    ids = data.parts["val"]  # 10 scored characters: rows of 4, 4, 2; rank 1 of 2: row 3, padding
    monkeypatch.setattr(data, "_world", lambda: (2, 1))
    batches = list(data.val_dataloader())
    x = torch.cat([b.x for b in batches], dim=1)
    y = torch.cat([b.y for b in batches], dim=1)
    lengths = torch.stack([b.lengths for b in batches], dim=1).sum(dim=1)
    assert lengths.tolist() == [2, 0]
    assert x.tolist() == [[*ids[8:10].tolist(), 0, 0], [0, 0, 0, 0]]
    assert y.tolist() == [ids[9:11].tolist() + [IGNORE] * 2, [IGNORE] * 4]
    unigram = torch.cat([b.baselines["unigram"] for b in batches], dim=1)
    assert unigram[0, :2].tolist() == data.baselines["val"]["unigram"][8:].tolist()
    assert unigram[0, 2:].tolist() == [0.0, 0.0] and unigram[1].tolist() == [0.0] * 4


def test_more_eval_streams_than_characters_give_one_row_each(tmp_path):
    data = _module(tmp_path, eval_streams=50)
    data.setup()
    batch = next(iter(data.val_dataloader()))
    assert batch.x.shape == (10, 1) and batch.lengths.tolist() == [1] * 10
    assert batch.x[:, 0].tolist() == data.parts["val"][:-1].tolist()


def test_a_skipped_ngram_baseline_is_nan_at_every_place(tmp_path):
    data = _module(tmp_path, ngram_max_order=0)
    data.setup()
    assert data.ngram_order is None and "ngram_order" not in data.state_dict()
    batches = list(data.test_dataloader())
    for batch in batches:
        ngram = batch.baselines["ngram"]
        assert ngram.dtype == torch.float64 and ngram.shape == batch.y.shape
        assert torch.isnan(ngram).all()
        assert not torch.isnan(batch.baselines["unigram"]).any()


def test_predict_is_refused_naming_what_to_do_instead():
    assert "rnnlab.generate" in TextDataModule.instead_of_predict
    assert "rnnlab.eval" in TextDataModule.instead_of_predict


def test_a_train_part_shorter_than_a_block_is_fitted_whole_below_ngram_fit_chars(tmp_path):
    data = _module(tmp_path, text=TEXT * 30, ngram_fit_chars=1000)  # 2472 train characters
    data.setup()
    assert data.data_metrics() == {"data/train_chars": 2472.0, "data/ngram_fit_chars": 2472.0}
    assert data.ngram_order == 2


def test_the_file_is_read_in_its_encoding_within_its_limit(tmp_path, monkeypatch):
    checked = []
    monkeypatch.setattr(text_module, "check_text_fits", lambda *args: checked.append(args))
    path = tmp_path / "latin.txt"
    path.write_bytes(TEXT.replace("cat", "c\u00e4t").encode("latin-1"))
    data = TextDataModule(
        file=str(path),
        encoding="latin-1",
        batch_size=2,
        bptt=3,
        val_fraction=0.1,
        test_fraction=0.15,
        ngram_max_order=3,
        ngram_fit_chars=5000,
        max_file_mb=0.5,
    )
    assert data.max_file_mb == 0.5
    text, where = data.source()
    assert text == TEXT.replace("cat", "c\u00e4t") and where == f"data.file={path}"
    assert checked == [(str(path), 0.25, 3, 5000)]
    small = _module(tmp_path, max_file_mb=50 / (1 << 20))  # 50 bytes
    with pytest.raises(DataError, match=r"data\.max_file_mb"):
        small.setup()
    with pytest.raises(ConfigError, match=r"data\.max_file_mb=0"):
        _module(tmp_path, max_file_mb=0)


def test_parts_can_be_set_as_a_mapping():
    data = TextDataModule()
    held = {"train": np.array([1, 2], dtype=np.uint8)}
    data.parts = held
    assert data.ids == held and data.ids is not held
    assert data.parts["train"].dtype == np.int64


def test_setup_steps_are_named(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="rnnlab")
    _module(tmp_path).setup()
    where = f"data.file={tmp_path / 'corpus.txt'}"
    for step in (
        f"{where}: checking 103 characters ...",
        "finding the training text's characters ...",
        "encoding 103 characters as uint8 ids ...",
    ):
        assert step in caplog.text
    assert "done in" in caplog.text


def test_read_text_names_the_setting_of_a_missing_file(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError) as caught:
        read_text(missing, "utf-8")
    assert str(caught.value) == f"data file {missing} does not exist; check data.file"


def test_a_codec_error_without_a_position_names_the_text(tmp_path):
    path = tmp_path / "puny.txt"
    path.write_bytes(b"abc-9z!")  # punycode's own error has no offset
    with pytest.raises(DataError) as caught:
        read_text(path, "punycode")
    assert str(caught.value) == (
        f"data.file={path}: the text is not valid punycode; set data.encoding to the file's "
        "encoding (e.g. latin-1)"
    )


@pytest.mark.parametrize(("text", "at"), [("\x00abc", 0), ("ab\x00c\x00", 2)])
def test_the_first_nul_character_is_named(tmp_path, text, at):
    path = tmp_path / "nul.txt"
    path.write_bytes(text.encode("utf-16"))
    with pytest.raises(DataError, match=f"a NUL character at character {at} in utf-16"):
        read_text(path, "utf-16")


def _no_nul_codec(name: str) -> codecs.CodecInfo | None:
    if name != "rnnlab_test_no_nul":
        return None
    latin = codecs.lookup("latin-1")

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        if "\x00" in text:
            raise UnicodeEncodeError(name, text, 0, 1, "no NUL here")
        return latin.encode(text, errors)

    return codecs.CodecInfo(encode, latin.decode, name=name)


def test_a_codec_that_cannot_encode_nul_has_no_one_byte_nul():
    codecs.register(_no_nul_codec)
    try:
        codec = codecs.lookup("rnnlab_test_no_nul")
        assert not corpus._nul_is_one_zero_byte(codec)
    finally:
        codecs.unregister(_no_nul_codec)


def test_characters_of_the_whole_text_by_default():
    assert characters_of("zab") == ["a", "b", "z"]
    assert characters_of("zab", end=2) == ["a", "z"]


def test_the_class_defaults_are_the_configs():
    import inspect

    import yaml

    from rnnlab.utils.config import config_dir

    conf = yaml.safe_load((Path(config_dir()) / "data" / "text.yaml").read_text())
    defaults = inspect.signature(TextDataModule).parameters
    for name, value in conf.items():
        if name not in ("_target_", "seed", "cache_dir"):
            assert defaults[name].default == value, name
    # the config's cache folder is under paths.log_dir; a module built without one caches nothing
    assert conf["cache_dir"] == "${paths.log_dir}/cache" and defaults["cache_dir"].default is None
    data = TextDataModule()
    assert (data.batch_size, data.bptt, data.eval_streams, data.ngram_max_order) == (32, 128, 8, 7)
    assert data.num_workers == 0  # the text is in memory: no worker processes


def test_a_module_before_setup_has_no_parts_metrics_or_settings():
    data = TextDataModule()
    assert len(data.parts) == 0 and data.baselines == {} and data.data_metrics() == {}
    for call in (data.model_settings, lambda: data.opening("val")):
        with pytest.raises(AssertionError) as caught:
            call()
        assert str(caught.value) == "setup() first"


def test_the_first_character_of_the_text_is_in_the_vocabulary(tmp_path):
    data = _module(tmp_path, text="Q" + TEXT[1:])
    data.setup()
    assert data.vocab is not None and "Q" in data.vocab.chars
    assert data.opening("train", 3) == "Qhe"


def test_setup_passes_the_stored_order_and_the_seed_to_the_baselines(tmp_path, monkeypatch):
    calls = []
    real = text_cache.fit_text_baselines

    def spy(*args):
        calls.append(args[1:])
        return real(*args)

    monkeypatch.setattr(text_cache, "fit_text_baselines", spy)
    data = _module(tmp_path, ngram_max_order=2, ngram_fit_chars=4000, seed=9)
    sha = hashlib.sha256(TEXT.encode()).hexdigest()
    vocab = [ord(c) for c in sorted(set(TEXT[:82]))]
    data.load_state_dict({"vocab": vocab, "sha256": sha, "ngram_order": 3})
    data.setup()
    assert calls == [(len(data.vocab), 2, 3, 4000, 9)]
    assert data.ngram_order == 3  # the stored order, not one chosen again among 2..2


def _limited(tmp_path) -> tuple[TextDataModule, Path]:
    data = _module(tmp_path, max_file_mb=200 / (1 << 20))  # 200 bytes
    data.setup()
    big = tmp_path / "big.txt"
    big.write_text("a mat " * 50, encoding="utf-8")  # 300 bytes
    return data, big


def test_a_test_file_over_the_stored_limit_is_refused_with_that_advice(tmp_path):
    data, big = _limited(tmp_path)
    data.use_test_file(str(big))
    with pytest.raises(DataError) as caught:
        data.setup()
    assert str(caught.value).endswith(
        "MiB; give a shorter file (the limit was stored with this model)"
    )
    data.use_test_file(str(big), encoding="utf-8")
    with pytest.raises(DataError, match="over data"):
        data.setup()


def test_the_world_and_the_epoch_come_from_the_trainer():
    from types import SimpleNamespace

    data = TextDataModule()
    assert (data._world(), data._epoch()) == ((1, 0), 0)
    data.trainer = SimpleNamespace(world_size=3, global_rank=2, current_epoch=5)  # type: ignore[assignment]
    assert (data._world(), data._epoch()) == ((3, 2), 5)


def test_the_train_loader_uses_every_character_that_divides_evenly(tmp_path, monkeypatch):
    data = _module(tmp_path, batch_size=3)  # (82 - 1) // 3 = 27 steps a stream, none left over
    data.setup()
    train = data.parts["train"]
    x = torch.cat([b.x for b in data.train_dataloader()], dim=1)
    assert x.tolist() == [train[i * 27 : (i + 1) * 27].tolist() for i in range(3)]
    monkeypatch.setattr(data, "_world", lambda: (2, 0))  # rank 0 of 2: 6 streams of 13
    x = torch.cat([b.x for b in data.train_dataloader()], dim=1)
    assert x.tolist() == [train[i * 13 : (i + 1) * 13].tolist() for i in range(3)]


def test_one_eval_stream_reads_the_whole_part_in_one_row(tmp_path):
    data = _module(tmp_path, eval_streams=1)
    data.setup()
    x = torch.cat([b.x for b in data.val_dataloader()], dim=1)
    assert x.tolist() == [data.parts["val"][:-1].tolist()]

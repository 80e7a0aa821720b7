"""``scripts/compressors.py``: the conditional code length of a test part given its context, in
bits per character, with xz through Python's ``lzma`` (the same liblzma as ``xz -9e``) and with
each compressor binary that is installed; a missing compressor is one skip line; the parts are
those ``experiment=charlm`` is scored on (slow: it imports the package and reads the corpus)."""

from __future__ import annotations

import importlib
import lzma
import random
import string
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def compressors_script() -> ModuleType:
    """Import ``scripts/compressors.py`` (it imports ``docs_tables`` from its own folder)."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("compressors")


SCRIPT = compressors_script()


def xz_size(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def random_text(rng: random.Random, characters: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase + " ", k=characters))


def parts(repeated: bool) -> dict[str, str]:
    """A random train and val part; a test part copied from the train part, or new."""
    rng = random.Random(0)
    train, val = random_text(rng, 20_000), random_text(rng, 2_000)
    test = train[5_000:7_000] if repeated else random_text(rng, 2_000)
    return {"train": train, "val": val, "test": test}


def test_arithmetic_counts_characters_not_bytes():
    # a "compressor" that stores the bytes as they are: 8 bits a byte, 16 per two-byte character
    context, whole = SCRIPT.conditional_bits(len, "abc", "éé")
    assert (context, whole) == (3, 7)
    assert SCRIPT.bits_per_character(context, whole, len("éé")) == 16.0
    assert SCRIPT.bits_per_character(1000, 1300, 600) == 4.0


def test_a_repeated_test_part_costs_far_less_than_a_new_one_with_xz():
    def bits(p: dict[str, str]) -> float:
        sizes = SCRIPT.conditional_bits(xz_size, p["train"] + p["val"], p["test"])
        return SCRIPT.bits_per_character(*sizes, len(p["test"]))

    repeated, new = bits(parts(repeated=True)), bits(parts(repeated=False))
    # 27 equally likely characters: log2(27) = 4.75 bits each, which no coder beats
    assert 4.75 < new < 5.5
    assert repeated < 0.2


# Block sorting draws on a copy only through the contexts it sorts side by side: a copied test
# part costs bzip2 about 3.8 bits a character, the others below 0.1.
REPEATED_AT_MOST = {"bzip2": 4.0}


@pytest.mark.parametrize(
    "compressor",
    [
        # zstd --ultra -22 --long sets up its 128 MiB window for every call: seconds each
        pytest.param(c, marks=pytest.mark.slow) if c.program == "zstd" else c
        for c in SCRIPT.COMPRESSORS
    ],
    ids=lambda c: c.program,
)
def test_each_installed_compressor_measures_through_its_program(compressor):
    if not compressor.available():
        pytest.skip(f"{compressor.program} is not installed (apt-get install {compressor.package})")
    [repeated] = SCRIPT.measure([compressor], parts(repeated=True))
    [new] = SCRIPT.measure([compressor], parts(repeated=False))
    limit = REPEATED_AT_MOST.get(compressor.program, 0.5)
    assert repeated.bits_per_char < limit and repeated.bits_given_train < limit
    assert 4.75 < new.bits_per_char < 6.0 and 4.75 < new.bits_given_train < 6.0
    assert new.compressor.startswith(compressor.name + " ")
    assert "unknown" not in new.compressor
    assert new.command == compressor.command


def test_the_xz_row_is_xz_9e():
    [xz] = [c for c in SCRIPT.COMPRESSORS if c.program == "xz"]
    if not xz.available():
        pytest.skip("xz is not installed (apt-get install xz-utils)")
    p = parts(repeated=False)
    [row] = SCRIPT.measure([xz], p)
    context = (p["train"] + p["val"]).encode("utf-8")
    assert (row.context_bytes, row.whole_bytes) == (
        xz_size(context),
        xz_size(context + p["test"].encode("utf-8")),
    )
    assert row.bits_per_char == 8 * (row.whole_bytes - row.context_bytes) / 2_000


def test_a_missing_compressor_is_one_skip_line(capsys):
    missing = SCRIPT.Compressor(
        "nothing", ("rnnlab-no-such-compressor", "-9"), "no-such-package", (), r"(\S+)"
    )
    assert SCRIPT.measure([missing], parts(repeated=True)) == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("skipped: nothing (rnnlab-no-such-compressor -9): ")
    assert "apt-get install no-such-package" in err


def test_write_docs_refuses_before_reading_the_corpus_when_one_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(SCRIPT.shutil, "which", lambda program: None if program == "7z" else "x")
    monkeypatch.setattr(SCRIPT, "charlm_parts", lambda overrides: pytest.fail("read the corpus"))
    assert SCRIPT.main(["--write-docs"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --write-docs needs every compressor; not installed: 7z (apt-get " \
        "install p7zip-full)\n"  # fmt: skip


def test_verbatim_share_counts_every_offset():
    assert SCRIPT.verbatim_share("abcdefgh", "xbcdey", width=3) == (2, 4)  # bcd, cde; not xbc
    assert SCRIPT.verbatim_share("abcdefgh", "xbcdey", width=6) == (0, 1)
    assert SCRIPT.verbatim_share("abc", "ab", width=3) == (0, 0)
    line = SCRIPT.verbatim_line({"train": "a" * 70, "val": "b" * 70, "test": "a" * 65 + "b" * 64})
    assert "of the test part's 66 64-character strings" in line
    assert "2 (3.0 %) occur verbatim in the train part, 66 (100.0 %) in train + val" in line


def test_the_page_block_has_the_script_header():
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    block = SCRIPT.read_block(page, SCRIPT.MARKER, "docs/results.md").split("\n")
    assert block[:2] == SCRIPT.table([])


@pytest.mark.slow
def test_the_parts_are_those_charlm_is_scored_on():
    from rnnlab.data.corpus import default_corpus

    where, p = SCRIPT.charlm_parts([])
    text, described = default_corpus()
    assert where == described
    assert p["train"] + p["val"] + p["test"] == text
    # the default fractions: the last 5 % tests, the 5 % before it validates
    assert len(p["test"]) == round(0.05 * len(text))
    assert len(p["val"]) + len(p["test"]) == round(0.10 * len(text))


@pytest.mark.slow
def test_a_bad_override_is_one_line(capsys):
    assert SCRIPT.main(["data.val_fraction=2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: data.val_fraction and data.test_fraction must be in (0, 1) with a sum below 1\n"
    )

"""Smoke tests of the benchmark scripts in ``scripts/``: each runs its ``--small`` setting in this
process and prints Markdown tables with the expected columns and finite, positive numbers. Speed
is never asserted (it depends on the machine and its load); only facts that do not are: equal
losses of the two training loops, less padding with buckets, the unpacked encoder's outputs."""

from __future__ import annotations

import importlib
import logging
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "bench"


# One torch thread: with one per core, any other process on the machine can stall the small
# ops of the packed LSTM for seconds, and these tests would take minutes instead of seconds.
SMALL = ["--small", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """The scripts silence Lightning's loggers and may set torch's thread count; give the
    other tests theirs back."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    levels = {name: logging.getLogger(name).level for name in names}
    threads = torch.get_num_threads()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    torch.set_num_threads(threads)


def script(name: str, folder: Path = SCRIPTS) -> ModuleType:
    """Import ``scripts/bench/<name>.py`` (not a package: the scripts import ``harness`` from
    their own folder, which is what the path entry gives them here too), or another folder's."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table in ``text`` as (header, rows of cells)."""
    found: list[tuple[list[str], list[list[str]]]] = []
    lines = [line for line in text.splitlines() if line.startswith("|")]
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(line) <= set("|-"):
            continue
        if found and len(cells) == len(found[-1][0]) and cells[0] != found[-1][0][0]:
            found[-1][1].append(cells)
        else:
            found.append((cells, []))
    return found


def column(rows: list[list[str]], index: int) -> list[float]:
    values = [float(row[index]) for row in rows]
    assert all(math.isfinite(v) for v in values), values
    return values


def test_bench_loop_small(capsys):
    text = script("loop").main(SMALL)
    assert "scripts/bench/loop.py --small --threads 1" in capsys.readouterr().out
    (timing_head, timing), (floor_head, floor), (agree_head, agree) = tables(text)
    assert timing_head == [
        "loop",
        "compared with",
        "s per run (median)",
        "s per run (min)",
        "time ratio (median of paired)",
        "time ratio (mins)",
        "spread (max-min)/median",
    ]
    textbook = "raw loop + outputs, packed encoder (textbook)"
    bare = "bare Lightning (plain LightningModule, same work)"
    assert [row[:2] for row in timing] == [
        ["raw loop", "raw loop"],
        ["raw loop + outputs", "raw loop + outputs"],
        [bare, bare],
        ["template, lean", "raw loop"],
        ["template, default (as train() builds it)", "raw loop + outputs"],
        [textbook, textbook],
        ["template, lean", bare],
        ["template, default (as train() builds it)", textbook],
    ]
    for index in (2, 3, 4, 5):
        assert min(column(timing, index)) > 0
    assert column(timing, 4)[:2] == [1.0, 1.0]
    assert floor_head[0].startswith("Lightning's own cost") and len(floor) == 1
    seconds, share, lowest = (float(v) for v in floor[0][1:])
    assert lowest == pytest.approx(1 + share, abs=1e-3) and math.isfinite(seconds)
    assert agree_head[:4] == ["loop", "final train loss", "final val loss", "final val F1"]
    assert min(column(agree, 1)) > 0 and min(column(agree, 2)) > 0
    # the same torchmetrics on the same predictions
    assert max(column(agree, 3)) - min(column(agree, 3)) < 1e-6
    # same init, batches and optimiser: the template and the raw loops train the same weights
    # (the textbook loop's packed encoder computes the same to float rounding)
    assert max(column(agree, 4)) < 1e-5
    exact = [row for row in agree if row[0] != textbook]
    assert max(column(exact, 5)) < 1e-5
    assert float(next(row for row in agree if row[0] == textbook)[5]) < 1e-3


def test_bench_bucket_small(capsys):
    text = script("bucket").main(SMALL)
    assert "scripts/bench/bucket.py --small --threads 1" in capsys.readouterr().out
    [(head, rows)] = tables(text)
    assert head[:4] == [
        "batches, encoder",
        "s per epoch (median)",
        "speed-up vs pad-to-max",
        "spread (max-min)/median",
    ]
    assert head[4:7] == ["recurrent steps per epoch", "padding %", "test acc (mean)"]
    assert len(rows) == 4
    for index in (1, 2, 4, 5):
        assert min(column(rows, index)) > 0
    assert all(0 <= acc <= 1 for acc in column(rows, 6))
    by_name = {row[0]: row for row in rows}
    pad, bucket = by_name["pad-to-max, packed (default)"], by_name["bucketed, packed"]
    assert float(bucket[5]) < float(pad[5])  # less padding
    assert int(bucket[4]) <= int(pad[4])  # fewer recurrent steps per epoch


def test_bench_throughput_small(capsys):
    text = script("throughput").main(SMALL)
    assert "scripts/bench/throughput.py --small --threads 1" in capsys.readouterr().out
    [(head, rows)] = tables(text)
    assert head[0] == "precision, encoder" and "train seq/s (median)" in head
    assert [row[0] for row in rows][:2] == ["fp32 (32-true), packed", "bf16-mixed, packed"]
    for index in (1, 2, 4, 5, 6, 7):
        assert min(column(rows, index)) > 0


def test_bench_encoder_paths_small(capsys):
    text = script("encoder_paths").main(["--small", "--threads", "1", "--device", "cpu"])
    [(head, rows)] = tables(text)
    assert head[:7] == [
        "lengths",
        "hidden",
        "precision",
        "pass",
        "packed ms",
        "padded ms",
        "packed / padded",
    ]
    assert [row[3] for row in rows] == ["train step", "inference"]
    assert min(column(rows, 4) + column(rows, 5)) > 0
    assert max(column(rows, 7)) < 1e-5  # the paths agree on the timed batches


def test_bench_charlm_small(capsys):
    text = script("charlm").main(SMALL)
    assert "scripts/bench/charlm.py --small --threads 1" in capsys.readouterr().out
    (train_head, train_rows), (gen_head, gen_rows) = tables(text)
    assert train_head[0] == "hidden units" and gen_head[0] == "hidden units"
    assert len(train_rows) == len(gen_rows) == 1
    assert min(column(train_rows, 1) + column(train_rows, 2) + column(gen_rows, 1)) > 0


def test_bench_diagnostics_small(capsys):
    text = script("diagnostics").main(SMALL)
    assert "training losses equal with and without diagnostics: True" in text
    header, rows = tables(text)[0]
    assert header[:4] == ["variant", "epoch s (median)", "spread", "time ratio"]
    assert [row[0] for row in rows] == ["without diagnostics", "with diagnostics"]
    assert all(float(row[3]) > 0 and float(row[6]) > 0 for row in rows)
    assert header[4:7] == ["epoch CPU s", "CPU spread", "CPU ratio"]


def test_archive_published_numbers_name_their_sources():
    archive = script("archive", SCRIPTS.parent)
    from rnnlab.data.ucr import shipped_names

    known = archive.published()
    assert known, "scripts/archive_published.csv is empty"
    for (dataset, method), (accuracy, source) in known.items():
        assert dataset in shipped_names() and method in archive.METHODS
        assert 0 < accuracy <= 1 and source in archive.SOURCES


# a whole training run in a subprocess: in the slow suite, to keep the default one short
@pytest.mark.slow
def test_archive_one_set_one_epoch(capsys, tmp_path):
    """scripts/archive.py on the smallest shipped set, one seed, one epoch (one subprocess)."""
    archive = script("archive", SCRIPTS.parent)
    argv = ["--datasets", "ArrowHead", "--seeds", "1", "--out", str(tmp_path)]
    text = archive.main([*argv, "--", "trainer.max_epochs=1"])
    assert "scripts/archive.py --datasets ArrowHead" in capsys.readouterr().out
    [(head, [row])] = tables(text)
    assert head == [
        "data set",
        "train",
        "test",
        "length",
        "channels",
        "classes",
        "seeds",
        "test acc (mean ± sd)",
        "min",
        "epochs",
        "s/epoch",
        "s/run",
        "ROCKET",
        "InceptionTime",
        "ResNet",
        "FCN",
        "1-NN DTW",
    ]
    assert row[:7] == ["ArrowHead", "36", "175", "251", "1", "3", "1"]
    assert 0 <= float(row[7]) == float(row[8]) <= 1 and float(row[9]) == 1
    assert min(column([row], 10) + column([row], 11)) > 0
    assert (tmp_path / "ArrowHead" / "seed1" / "metrics.json").is_file()
    # every published number carries a footnote, and every footnote is listed under the table
    footnotes = dict(re.findall(r"^\[(\d+)\] (.+)$", text, flags=re.MULTILINE))
    for cell in row[12:]:
        published = re.fullmatch(r"(\d\.\d{3}) \[(\d+)\]", cell)
        assert published, cell
        number, note = published.groups()
        assert 0 < float(number) <= 1 and footnotes[note] in archive.SOURCES.values()


# three fresh interpreters, one of them a training run: in the slow suite
@pytest.mark.slow
def test_bench_startup_small(capsys):
    text = script("startup").main(["--small"])
    assert "scripts/bench/startup.py --small" in capsys.readouterr().out
    ((head, rows),) = tables(text)
    assert head == ["measured", "s (median)", "s (min)", "s (max)"]
    assert [row[0].split(":")[0] for row in rows] == [
        "python -m rnnlab.train",
        "python -c 'import torch' (whole process)",
        "python -c 'import lightning.pytorch, torchmetrics' (whole process)",
    ]
    for index in (1, 2, 3):
        assert min(column(rows, index)) > 0
    # a run imports both libraries before its first step
    assert float(rows[0][1]) > float(rows[1][1])

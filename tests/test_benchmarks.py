"""Smoke tests of the benchmark scripts in ``scripts/``: each runs its ``--small`` setting in this
process and prints Markdown tables with the expected columns and finite, positive numbers. Speed
is never asserted (it depends on the machine and its load); only facts that do not are: equal
losses of the two training loops, less padding with buckets, the unpacked encoder's outputs.
The smoke runs also write their tables (``--write-docs``) into copies of the docs pages, and
every ``bench:`` marker of the real pages must be one that a command shown there writes."""

from __future__ import annotations

import importlib
import logging
import math
import re
import shlex
import shutil
import subprocess
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


DOCS_PAGE = script("docs_page")
DOCS_TABLES = script("docs_tables", SCRIPTS.parent)
DOCS = DOCS_PAGE.DOCS
BENCH_SCRIPTS = (
    "loop",
    "throughput",
    "bucket",
    "encoder_paths",
    "charlm",
    "diagnostics",
    "startup",
    "prune_search",
    "threads",
    "scale",
)


@pytest.fixture
def docs_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The benchmark pages copied under ``tmp_path``, where ``--write-docs`` now writes."""
    for name in {DOCS_PAGE.page(bench).name for bench in BENCH_SCRIPTS}:
        shutil.copy(DOCS / name, tmp_path / name)
    monkeypatch.setattr(DOCS_PAGE, "DOCS", tmp_path)
    return tmp_path


def run_writing_docs(name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """``scripts/bench/<name>.py argv --write-docs`` into the ``docs_copy`` pages, its refusal
    of ``--small`` lifted; checks that exactly its block changed, to tables it printed, and
    returns the printed report."""
    module = script(name)
    # the real pages refuse smoke numbers; these copies take them
    docs_block = DOCS_PAGE.docs_block
    monkeypatch.setattr(
        DOCS_PAGE, "docs_block", lambda bench, variant, small: docs_block(bench, variant)
    )
    marker = DOCS_PAGE.marker(name, module.docs_variant(module.parse_args(argv)))
    page = DOCS_PAGE.page(name)
    before = page.read_text(encoding="utf-8")
    if f"<!-- BEGIN {marker} -->" not in before:
        # a variant --small sets itself (diagnostics' data.length=20): an empty block for it
        before += f"\n<!-- BEGIN {marker} -->\n<!-- END {marker} -->\n"
        page.write_text(before, encoding="utf-8")
    text = module.main([*argv, "--write-docs"])
    after = page.read_text(encoding="utf-8")
    block = DOCS_TABLES.read_block(after, marker, page)
    assert DOCS_TABLES.replace_block(before, marker, block, page) == after  # nothing else changed
    assert block.startswith("| ") and block in text  # its tables, as printed
    return text


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


def test_bench_loop_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs("loop", SMALL, monkeypatch)
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


def test_bench_bucket_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs("bucket", SMALL, monkeypatch)
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


def test_bench_throughput_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs("throughput", SMALL, monkeypatch)
    assert "scripts/bench/throughput.py --small --threads 1" in capsys.readouterr().out
    [(head, rows)] = tables(text)
    assert head[0] == "precision, encoder" and "train seq/s (median)" in head
    assert [row[0] for row in rows][:2] == ["fp32 (32-true), packed", "bf16-mixed, packed"]
    for index in (1, 2, 4, 5, 6, 7):
        assert min(column(rows, index)) > 0


def test_bench_encoder_paths_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs(
        "encoder_paths", ["--small", "--threads", "1", "--device", "cpu"], monkeypatch
    )
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


def test_encoder_paths_imports_nothing_but_torch():
    """``encoder_paths.py`` runs where only torch is installed: neither it nor the harness it
    shares with the other benchmarks imports Lightning, Hydra or torchmetrics."""
    blocked = ("lightning", "lightning.pytorch", "hydra", "omegaconf", "torchmetrics")
    code = "\n".join(
        [
            "import sys",
            f"sys.modules.update(dict.fromkeys({blocked!r}))",  # importing one raises
            f"sys.path.insert(0, {str(SCRIPTS)!r})",
            "import encoder_paths",
            "print(encoder_paths.parse_args(['--small']).repetitions)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3"]


def test_bench_charlm_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs("charlm", SMALL, monkeypatch)
    assert "scripts/bench/charlm.py --small --threads 1" in capsys.readouterr().out
    (train_head, train_rows), (gen_head, gen_rows) = tables(text)
    assert train_head[0] == "hidden units" and gen_head[0] == "hidden units"
    assert len(train_rows) == len(gen_rows) == 1
    assert min(column(train_rows, 1) + column(train_rows, 2) + column(gen_rows, 1)) > 0


def test_bench_diagnostics_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs("diagnostics", SMALL, monkeypatch)
    assert "training losses equal with and without diagnostics: True" in text
    header, rows = tables(text)[0]
    assert header[:4] == ["variant", "epoch s (median)", "spread", "time ratio"]
    assert [row[0] for row in rows] == ["without diagnostics", "with diagnostics"]
    assert all(float(row[3]) > 0 and float(row[6]) > 0 for row in rows)
    assert header[4:7] == ["epoch CPU s", "CPU spread", "CPU ratio"]


def documented_markers() -> dict[Path, set[str]]:
    """Every ``bench:`` marker of the docs, by page."""
    found: dict[Path, set[str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        names = re.findall(r"^<!-- BEGIN (bench:\S+) -->$", text, flags=re.MULTILINE)
        assert len(names) == len(set(names)), f"{page.name}: a bench marker twice"
        if names:
            found[page] = set(names)
    return found


def documented_commands() -> dict[Path, dict[str, str]]:
    """For each page, the marker each ``scripts/bench/<script>.py ...`` command shown there
    writes with ``--write-docs``, to the command (its arguments end at a backtick or a ``#``)."""
    found: dict[Path, dict[str, str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        for line in page.read_text(encoding="utf-8").splitlines():
            for command in re.finditer(r"scripts/bench/(\w+)\.py([^`#\n]*)", line):
                # a command continued on the next line ends in a backslash
                arguments = command.group(2).rstrip().removesuffix("\\")
                name, argv = command.group(1), shlex.split(arguments)
                assert name in BENCH_SCRIPTS, f"{page.name}: {command.group(0)}"
                if argv[:1] == ["--child"]:  # one measured process (scale.py): no table
                    continue
                module = script(name)
                marker = DOCS_PAGE.marker(name, module.docs_variant(module.parse_args(argv)))
                found.setdefault(page, {})[marker] = command.group(0).strip()
    return found


def test_every_bench_marker_is_what_a_command_on_its_page_writes():
    markers, commands = documented_markers(), documented_commands()
    assert markers, "no bench: markers in docs/"
    for page, names in markers.items():
        for name in names:
            bench = name.split(":")[1]
            assert bench in BENCH_SCRIPTS, f"{page.name}: {name} names no benchmark script"
            assert DOCS_PAGE.page(bench) == page, (
                f"{name} is in {page.name}; {bench} writes elsewhere"
            )
            assert name in commands.get(page, {}), (
                f"{page.name}: no command shown there writes {name} (--write-docs)"
            )
    for page, written in commands.items():
        for name, command in written.items():
            assert name in markers.get(page, set()), (
                f"{page.name}: `{command} --write-docs` writes {name}, which has no markers there"
            )


def test_variants_come_from_the_device_and_the_overrides():
    throughput, paths = script("throughput"), script("encoder_paths")
    args = throughput.parse_args(["--accelerator", "gpu", "--repetitions", "9", "a.b=1", "c=2"])
    assert DOCS_PAGE.marker("throughput", throughput.docs_variant(args)) == (
        "bench:throughput:gpu:a.b=1:c=2"
    )
    args = paths.parse_args(["--device", "cpu", "--threads", "1"])
    assert DOCS_PAGE.marker("encoder_paths", paths.docs_variant(args)) == "bench:encoder_paths:cpu"
    assert DOCS_PAGE.marker("charlm", []) == "bench:charlm"
    assert DOCS_PAGE.page("diagnostics").name == "rnn-dynamics.md"
    assert DOCS_PAGE.page("loop").name == "benchmarks.md"


def test_writing_a_table_replaces_exactly_its_block(docs_copy):
    page = docs_copy / "benchmarks.md"
    before = page.read_text(encoding="utf-8")
    table = (
        "| precision, encoder | train seq/s (median) |\n|---|---|\n| fp32 (32-true), packed | 1 |"
    )
    DOCS_PAGE.docs_block("throughput", ["gpu"]).write(table)
    after = page.read_text(encoding="utf-8")
    old = DOCS_TABLES.read_block(before, "bench:throughput:gpu", page)
    assert before.count(old) == 1 and after == before.replace(old, table)
    # the other throughput tables, whose markers start the same, are untouched
    for other in ("cpu", "gpu:model.encoder.hidden_size=256"):
        name = f"bench:throughput:{other}"
        assert DOCS_TABLES.read_block(after, name, page) == DOCS_TABLES.read_block(
            before, name, page
        )
    DOCS_PAGE.docs_block("throughput", ["gpu"]).write(table)  # again: the same page
    assert page.read_text(encoding="utf-8") == after


def test_write_docs_refuses_smoke_runs_and_unknown_variants_before_measuring(monkeypatch):
    with pytest.raises(SystemExit, match="smoke test"):
        DOCS_PAGE.docs_block("loop", [], small=True)
    throughput = script("throughput")
    monkeypatch.setattr(throughput, "measure", lambda *_: pytest.fail("measuring began"))
    with pytest.raises(SystemExit) as failed:
        throughput.main(["--write-docs", "model.encoder.hidden_size=7"])
    assert str(failed.value) == (
        "error: docs/benchmarks.md has no line "
        "<!-- BEGIN bench:throughput:cpu:model.encoder.hidden_size=7 -->"
    )


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
def test_bench_startup_small(capsys, docs_copy, monkeypatch):
    text = run_writing_docs("startup", ["--small"], monkeypatch)
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

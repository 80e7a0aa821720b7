"""Hostile input through the public commands, as subprocesses: every case must end with a
non-zero exit, exactly one line on stderr naming the problem, no traceback, and no output (no
run directory left behind by train, no prediction file by predict)."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rnnlab.data.export import export
from rnnlab.train import train
from tests.conftest import FAST, TS_HEADER, compose_config
from tests.test_cli import _run


def make_checkpoints(root: Path) -> dict[str, Path]:
    """A classification and a forecasting checkpoint from short real runs."""
    out = {}
    for task, overrides in {"classify": [], "forecast": ["experiment=forecast"]}.items():
        run = root / task
        cfg = compose_config(
            "train", [*FAST, "trainer.max_epochs=1", "logger=none", *overrides], run
        )
        train(cfg)
        out[task] = run / "checkpoints" / "best.ckpt"
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def run_case(directory: Path, checkpoints: dict[str, Path], case: tuple):
    """Set up one case in ``directory`` and run its command there; the finished process."""
    _, command, args, setup, _ = case
    if setup is not None:
        takes_checkpoints = setup.__code__.co_argcount == 2
        setup(directory, checkpoints) if takes_checkpoints else setup(directory)
    extra = ["hydra.run.dir=run"] if not any(a.startswith("hydra.run.dir") for a in args) else []
    return _run(["-m", f"rnnlab.{command}", *args, *extra], directory)


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        path = directory / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)

    return setup


def _ts(name: str, rows: list[str]) -> Callable[[Path], None]:
    return _write(name, TS_HEADER + "\n".join(rows) + "\n")


GOOD_TS = ["1,2,3:a", "2,3,4,5:a", "3,2,1:a", "1,1,2:b", "5,4,3:b", "2,2,2:b"]
CSV_HEAD = "date,co2\n"
CSV_ROWS = "".join(f"2000-01-{d:02d},{300 + d}\n" for d in range(1, 29))
FORECAST = [
    "experiment=forecast_csv",
    "data.file=s.csv",
    "data.lookback=4",
    "data.horizon=2",
    "data.season_length=2",
]
TS_FILES = ["data.train_file=train.ts", "data.test_file=test.ts", "data.val_fraction=0.34"]


def _copy_checkpoint(task: str, name: str, edit: Callable[[bytes], bytes]):
    def setup(directory: Path, checkpoints: dict[str, Path]) -> None:
        (directory / name).write_bytes(edit(checkpoints[task].read_bytes()))

    return setup


def _tampered_checkpoint(task: str, name: str, target: str):
    """A copy of a genuine checkpoint whose stored config names ``target`` as the model."""

    def setup(directory: Path, checkpoints: dict[str, Path]) -> None:
        checkpoint = torch.load(checkpoints[task], weights_only=True)
        checkpoint["rnnlab_config"]["model"]["_target_"] = target
        torch.save(checkpoint, directory / name)

    return setup


def _write_in(folder: str, name: str, text: str) -> Callable[[Path], None]:
    def setup(directory: Path) -> None:
        (directory / folder).mkdir()
        (directory / folder / name).write_text(text)

    return setup


# (id, command, arguments, setup, what stderr must say)
CASES = [
    (
        "csv ragged rows",
        "train",
        FORECAST,
        _write("s.csv", CSV_HEAD + CSV_ROWS + "2000-01-29,1,9\n"),
        "s.csv as CSV: Error tokenizing data. C error: Expected 2 fields in line 30, saw 3",
    ),
    (
        "csv wrong delimiter",
        "train",
        FORECAST,
        _write("s.csv", "date;co2\n2000-01-01;1\n"),
        "s.csv has no column 'date' (columns: ['date;co2'])",
    ),
    ("csv header only", "train", FORECAST, _write("s.csv", CSV_HEAD), "s.csv has no rows"),
    (
        "csv empty file",
        "train",
        FORECAST,
        _write("s.csv", ""),
        "s.csv as CSV: No columns to parse from file",
    ),
    (
        "csv not utf-8",
        "train",
        FORECAST,
        _write("s.csv", b"date,co2\n2000-01-01,\xff\xfe\n"),
        "s.csv as CSV: 'utf-8' codec can't decode byte 0xff",
    ),
    (
        "csv nan",
        "train",
        [*FORECAST, "data.missing=error"],
        _write("s.csv", CSV_HEAD + CSV_ROWS + "2000-01-29,\n"),
        "s.csv has missing values at line 30 column 'co2'",
    ),
    (
        "csv inf",
        "train",
        FORECAST,
        _write("s.csv", CSV_HEAD + CSV_ROWS + "2000-01-29,inf\n"),
        "s.csv line 30: column 'co2' holds inf, not a finite number",
    ),
    (
        "csv string in numbers",
        "train",
        FORECAST,
        _write("s.csv", CSV_HEAD + "2000-01-01,3OO\n" + CSV_ROWS),
        "s.csv line 2: column 'co2' holds '3OO', not a finite number",
    ),
    (
        "csv unsorted time",
        "train",
        FORECAST,
        _write("s.csv", CSV_HEAD + CSV_ROWS + "2000-01-05,1\n"),
        "s.csv line 30: time 2000-01-05 00:00:00 precedes the time on line 29",
    ),
    (
        "csv beyond float32",
        "train",
        FORECAST,
        _write("s.csv", CSV_HEAD + CSV_ROWS.replace(",305\n", ",3e38\n")),
        "s.csv line 6: column 'co2' holds 3e+38, beyond what float32 training can represent",
    ),
    (
        "csv repeated column",
        "train",
        FORECAST,
        _write("s.csv", "date,co2,co2\n" + CSV_ROWS.replace("\n", ",1\n")),
        "s.csv has column 'co2' more than once; rename or drop the copies",
    ),
    (
        "data name is a path",
        "train",
        ["data.name=../../tmp/x"],
        None,
        "data.name='../../tmp/x' is not an archive data set name",
    ),
    (
        "series too short",
        "train",
        FORECAST,
        _write("s.csv", CSV_HEAD + CSV_ROWS[:60]),
        "s.csv has 4 time steps, fewer than lookback + horizon = 6",
    ),
    (
        "ts zero-length sequence",
        "train",
        TS_FILES,
        lambda d: (_ts("train.ts", [*GOOD_TS, ":a"])(d), _ts("test.ts", GOOD_TS)(d)),
        "train.ts sample 6 has length 0",
    ),
    (
        "ts nan",
        "train",
        TS_FILES,
        lambda d: (_ts("train.ts", ["1,NaN,3:a", *GOOD_TS])(d), _ts("test.ts", GOOD_TS)(d)),
        "train.ts sample 0 has NaN/inf at time step 1, channel 0",
    ),
    (
        "ts beyond float32",
        "train",
        TS_FILES,
        lambda d: (_ts("train.ts", ["1,1e308,3:a", *GOOD_TS])(d), _ts("test.ts", GOOD_TS)(d)),
        "train.ts sample 0 has value 1e+308 at time step 1, channel 0, beyond what float32",
    ),
    (
        "ts text value",
        "train",
        TS_FILES,
        lambda d: (_ts("train.ts", ["1,x,3:a", *GOOD_TS])(d), _ts("test.ts", GOOD_TS)(d)),
        "cannot read",
    ),
    (
        "ts unseen test label",
        "train",
        TS_FILES,
        lambda d: (_ts("train.ts", GOOD_TS)(d), _ts("test.ts", ["1,2:a", "2,1:c"])(d)),
        "test.ts has labels ['c'] that the training split lacks",
    ),
    (
        "unknown config key",
        "train",
        ["model.encoder.hiden_size=8"],
        None,
        "Could not override 'model.encoder.hiden_size'",
    ),
    (
        "unknown config value",
        "train",
        ["model.encoder.cell=transformer"],
        None,
        "unknown cell 'transformer'",
    ),
    (
        "run dir below a file",
        "train",
        ["hydra.run.dir=blocker/run"],
        _write("blocker", "x"),
        "cannot create the run directory",
    ),
    (
        "eval missing checkpoint",
        "eval",
        ["ckpt_path=none.ckpt"],
        None,
        "checkpoint none.ckpt does not exist",
    ),
    (
        "eval truncated checkpoint",
        "eval",
        ["ckpt_path=cut.ckpt"],
        _copy_checkpoint("classify", "cut.ckpt", lambda b: b[: len(b) // 2]),
        "cannot load checkpoint cut.ckpt safely",
    ),
    (
        "eval corrupted checkpoint",
        "eval",
        ["ckpt_path=bad.ckpt"],
        _copy_checkpoint("classify", "bad.ckpt", lambda b: b[:100] + bytes(400) + b[500:]),
        "cannot load checkpoint bad.ckpt safely",
    ),
    (
        "eval not an rnnlab checkpoint",
        "eval",
        ["ckpt_path=plain.ckpt"],
        lambda d: torch.save({"state_dict": {}}, d / "plain.ckpt"),
        "plain.ckpt is not an rnnlab checkpoint",
    ),
    (
        "predict checkpoint of another task",
        "predict",
        ["ckpt_path=forecast.ckpt", "input=new.ts", "output=out.csv"],
        lambda d, c: (shutil.copy(c["forecast"], d / "forecast.ckpt"), _ts("new.ts", GOOD_TS)(d)),
        "new.ts is a .ts file, but this checkpoint is a forecasting model",
    ),
    (
        "predict other columns",
        "predict",
        ["ckpt_path=forecast.ckpt", "input=new.csv", "output=out.csv"],
        lambda d, c: (
            shutil.copy(c["forecast"], d / "forecast.ckpt"),
            _write("new.csv", "date,ppm\n2000-01-01,1\n")(d),
        ),
        "new.csv has no column 'co2'",
    ),
    (
        "predict wrong channels",
        "predict",
        ["ckpt_path=classify.ckpt", "input=new.ts", "output=out.csv"],
        lambda d, c: (shutil.copy(c["classify"], d / "classify.ckpt"), _ts("new.ts", GOOD_TS)(d)),
        "new.ts has [1] channel(s) per sample; the model was trained on 12",
    ),
    (
        "predict missing input",
        "predict",
        ["ckpt_path=classify.ckpt", "input=gone.ts", "output=out.csv"],
        lambda d, c: shutil.copy(c["classify"], d / "classify.ckpt"),
        "data file gone.ts does not exist",
    ),
    (
        "predict output below a file",
        "predict",
        ["ckpt_path=classify.ckpt", "input=jv.ts", "output=blocker/out.csv"],
        lambda d, c: (
            shutil.copy(c["classify"], d / "classify.ckpt"),
            export("JapaneseVowels", d / "jv.ts"),
            _write("blocker", "x")(d),
        ),
        "cannot write blocker/out.csv",
    ),
    (
        "checkpoint naming a callable",
        "eval",
        ["ckpt_path=evil.ckpt"],
        _tampered_checkpoint("classify", "evil.ckpt", "rnnlab.utils.files.os.system"),
        "checkpoint evil.ckpt: model._target_ is 'rnnlab.utils.files.os.system', not one of",
    ),
    (
        "predict over an existing file",
        "predict",
        ["ckpt_path=classify.ckpt", "input=jv.ts", "output=kept.csv"],
        lambda d, c: (
            shutil.copy(c["classify"], d / "classify.ckpt"),
            export("JapaneseVowels", d / "jv.ts"),
            _write("kept.csv", "mine\n")(d),
        ),
        "output=kept.csv exists; choose another path or pass overwrite=true",
    ),
    (
        "run dir of an earlier run",
        "train",
        ["hydra.run.dir=used"],
        _write_in("used", "metrics.json", "{}"),
        "the run directory",
    ),
    (
        "predict missing values",
        "predict",
        ["ckpt_path=classify.ckpt"],
        None,
        "missing required values: input=..., output=...",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_fails_cleanly(tmp_path, checkpoints, case):
    result = run_case(tmp_path, checkpoints, case)
    report = os.environ.get("RNNLAB_HOSTILE_TABLE")  # set by scripts/hostile_table.py
    if report:
        seen = result.stderr.strip().replace(f"{tmp_path}/", "").replace("|", "\\|")
        with open(report, "a", encoding="utf-8") as table:
            table.write(f"| {case[0]} | {case[1]} | {result.returncode} | `{seen}` |\n")
    message = case[-1]
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "run").exists()  # no run directory left behind
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob("*.tmp"))


def test_the_suite_is_wide():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)


def hostile_table_script() -> ModuleType:
    """Import ``scripts/hostile_table.py`` (it imports ``docs_tables`` from its own folder)."""
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    if str(scripts) not in sys.path:
        sys.path.insert(0, str(scripts))
    return importlib.import_module("hostile_table")


def committed_rows() -> list[list[str]]:
    """The cells of each row of the table between the hostile markers of docs/security.md."""
    script = hostile_table_script()
    page = script.SECURITY_PAGE.read_text(encoding="utf-8")
    header, separator, *rows = script.read_block(page, script.MARKER, "docs/security.md").split(
        "\n"
    )
    assert f"{header}\n{separator}" == script.HEADER
    unescaped_bar = re.compile(r"(?<!\\)\|")
    return [
        [cell.strip().replace("\\|", "|") for cell in unescaped_bar.split(row)[1:-1]]
        for row in rows
    ]


def test_the_committed_table_has_a_row_per_case():
    """Without the slow suite: docs/security.md's table names every case with its command, in
    the suite's order, and each row's message holds what the case requires. Exit status 2 is
    the page's promise for bad input; the cases record no status (the suite asserts non-zero)."""
    rows = committed_rows()
    assert [row[:2] for row in rows] == [[case[0], case[1]] for case in CASES]
    for row, case in zip(rows, CASES, strict=True):
        assert row[2] == "2", row
        seen = row[3].removeprefix("`").removesuffix("`")
        assert seen.startswith("error: ") and case[-1] in seen, (row, case[-1])


def test_hostile_table_writes_the_suite_rows_between_the_markers(tmp_path, monkeypatch, capsys):
    script = hostile_table_script()
    original = script.SECURITY_PAGE.read_text(encoding="utf-8")
    page = tmp_path / "security.md"
    page.write_text(original, encoding="utf-8")
    monkeypatch.setattr(script, "SECURITY_PAGE", page)
    row = "| csv nan | train | 2 | `error: s.csv has missing values` |\n"

    def slow_suite(command, env, **_):  # writes the rows as the suite would, runs nothing
        Path(env["RNNLAB_HOSTILE_TABLE"]).write_text(row, encoding="utf-8")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(script.subprocess, "run", slow_suite)
    assert script.main(["--write-docs"]) == 0
    table = f"{script.HEADER}\n{row}".rstrip("\n")
    assert capsys.readouterr().out == f"{table}\n"
    old = script.read_block(original, script.MARKER, "docs/security.md")
    assert original.count(old) == 1
    written = page.read_text(encoding="utf-8")
    assert written == original.replace(old, table)
    assert script.main(["--write-docs"]) == 0
    assert page.read_text(encoding="utf-8") == written

    # a missing marker fails before the slow suite runs
    page.write_text(original.replace("<!-- END hostile -->\n", ""), encoding="utf-8")
    monkeypatch.setattr(script.subprocess, "run", lambda *_, **__: pytest.fail("suite ran"))
    with pytest.raises(SystemExit, match=r"has no line <!-- END hostile -->"):
        script.main(["--write-docs"])

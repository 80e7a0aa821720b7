"""The data examples of README.md and docs/your-data.md, and the Python example of docs/api.md,
read from the Markdown and run: each example file is written under the name its documented
command uses and trained on for one epoch with that command's overrides, so an example whose
format, file name or column names disagree with its command fails here."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra

from rnnlab.train import train
from tests.conftest import compose_config
from tests.markdown_docs import ROOT, Block, Command, command_after, fenced_blocks

# One quick epoch; these change how long the run takes, never which files or columns it reads.
QUICK = [
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "model.encoder.hidden_size=8",
    "logger=none",
]


def _blocks(page: str) -> list[Block]:
    return fenced_blocks((ROOT / page).read_text(encoding="utf-8"))


def _titled(page: str, title: str) -> Block:
    found = [b for b in _blocks(page) if b.title is not None and b.title.startswith(title)]
    assert len(found) == 1, f"{page}: {len(found)} blocks titled {title!r}"
    return found[0]


def _under(page: str, heading: str, first_line: str) -> Block:
    """The first block after ``heading`` whose first line starts with ``first_line``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert heading in text, f"{page} has no heading {heading!r}"
    start = text.count("\n", 0, text.index(heading)) + 1
    found = [b for b in _blocks(page) if b.line > start and b.lines[:1] != ()
             and b.lines[0].startswith(first_line)]  # fmt: skip
    assert found, f"{page}: no block starting {first_line!r} under {heading!r}"
    return found[0]


def _example(page: str, where: str) -> Block:
    """``where``: a block's title, or ``## heading|first line`` for a block without one."""
    if where.startswith("#"):
        heading, first_line = where.split("|")
        return _under(page, heading, first_line)
    return _titled(page, where)


def _value(command: Command, key: str) -> str:
    values = [a.split("=", 1)[1] for a in command.args if a.startswith(f"{key}=")]
    assert len(values) == 1, f"{command.describe()}: sets {key} {len(values)} times"
    return values[0]


def _last_block_line(block: Block) -> int:
    return block.line + len(block.lines)


@pytest.mark.parametrize(
    ("page", "where", "metric"),
    [
        ("README.md", "## Your own data|@problemName", "test/acc"),
        ("docs/your-data.md", "walk_TRAIN.ts", "test/acc"),
        ("docs/your-data.md", "price_TRAIN.ts", "test/rmse"),
    ],
)
def test_ts_example_trains_with_its_command(tmp_path, monkeypatch, page, where, metric):
    block = _example(page, where)
    command = command_after(ROOT / page, _last_block_line(block))
    assert command.program == "rnnlab.train", command.describe()
    train_file, test_file = _value(command, "data.train_file"), _value(command, "data.test_file")
    if block.title is not None:  # the example is the file its command trains on
        assert train_file == block.title, f"{command.describe()}: trains on {train_file}"
    monkeypatch.chdir(tmp_path)  # the command's relative file names resolve here
    Path(train_file).write_text(block.text)
    Path(test_file).write_text(block.text)  # "write the test file the same way"

    cfg = compose_config("train", [*command.args, *QUICK], tmp_path / "run")
    metrics = train(cfg)

    assert math.isfinite(metrics[metric]), f"{page} {where}: {metrics}"
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def _extended_csv(example: str, rows_per_series: int, seed: int = 0) -> str:
    """The documented rows, then generated ones (seeded) until every series has
    ``rows_per_series``. The first column is the time (dates); a column of words names the
    series; every other column is a number, continued as a random walk from its last value with
    the documented number of decimals; the first column of words names the series, any other
    holds its series' value throughout (a static column). The columns are the example's: nothing
    is taken from the command, so a command naming other columns fails in training."""
    table = list(csv.reader(io.StringIO(example)))
    header, rows = table[0], [r for r in table[1:] if r]
    rng = np.random.default_rng(seed)

    def is_number(text: str) -> bool:
        return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None

    words = [i for i in range(1, len(header)) if not all(is_number(r[i]) for r in rows)]
    series_at = words[0] if words else None
    by_series: dict[str, list[list[str]]] = {}
    for row in rows:
        by_series.setdefault(row[series_at] if series_at is not None else "", []).append(row)
    generated: list[tuple[datetime, list[str]]] = []
    for series_rows in by_series.values():
        times = [datetime.fromisoformat(r[0]) for r in series_rows]
        # the documented step, or a week when a series shows one row (the examples are weekly)
        step = times[-1] - times[-2] if len(times) > 1 else timedelta(days=7)
        last = list(series_rows[-1])
        for k in range(1, rows_per_series - len(series_rows) + 1):
            row = list(last)
            row[0] = (times[-1] + k * step).date().isoformat()
            for i, text in enumerate(last):
                if i == 0 or i in words:
                    continue
                decimals = len(text.split(".")[1]) if "." in text else 0
                value = float(row[i]) * (1 + 0.05 * rng.standard_normal())
                row[i] = f"{max(value, 0.0):.{decimals}f}"
            last = row
            generated.append((times[-1] + k * step, row))
    generated.sort(key=lambda item: item[0])  # stable: by time, then series in documented order
    lines = io.StringIO()
    csv.writer(lines, lineterminator="\n").writerows([header, *rows, *(r for _, r in generated)])
    return lines.getvalue()


def test_extended_csv_keeps_the_documented_rows_and_orders_each_series():
    example = "week,store,units\n2024-01-01,a,10\n2024-01-01,b,20\n"
    written = _extended_csv(example, rows_per_series=4)
    lines = written.splitlines()
    assert lines[:3] == example.splitlines() and len(lines) == 1 + 2 * 4
    rows = list(csv.reader(lines[1:]))
    for store in "ab":
        weeks = [r[0] for r in rows if r[1] == store]
        assert weeks == ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
    assert written == _extended_csv(example, rows_per_series=4)  # seeded


@pytest.mark.parametrize(
    ("page", "where"),
    [
        ("README.md", "## Your own data|week,"),
        ("docs/your-data.md", "sales.csv (the first rows)"),
        ("docs/your-data.md", "sales.csv (with a promotion plan"),
    ],
)
def test_forecasting_csv_example_trains_with_its_command(tmp_path, monkeypatch, page, where):
    block = _example(page, where)
    command = command_after(ROOT / page, _last_block_line(block))
    assert command.program == "rnnlab.train", command.describe()
    data_file = _value(command, "data.file")
    if block.title is not None:
        assert block.title.split()[0] == data_file, f"{command.describe()}: reads {data_file}"
    monkeypatch.chdir(tmp_path)
    # Every series needs lookback + horizon rows in each of its train, validation and test parts
    # (15 % each at the least); the documented 52 + 8 (or the default 104 + 26) would need
    # hundreds of generated rows, so this run lowers them to 8 + 2 (and the seasonal-naive
    # baseline's season to 4) for speed: the file and its columns are what is tested.
    Path(data_file).write_text(_extended_csv(block.text, rows_per_series=80))
    fast = ["data.lookback=8", "data.horizon=2", "data.season_length=4"]

    cfg = compose_config("train", [*command.args, *QUICK, *fast], tmp_path / "run")
    metrics = train(cfg)

    assert math.isfinite(metrics["test/mae"]), f"{page}: {metrics}"
    assert "test/mae_seasonal_naive" in metrics


def test_python_api_example_runs(tmp_path, monkeypatch):
    [block] = [b for b in _blocks("docs/api.md") if b.info.split()[:1] == ["python"]]
    assert "trainer.max_epochs=2" in block.text, "the example's epochs changed: update this test"
    code = block.text.replace("trainer.max_epochs=2", "trainer.max_epochs=1")
    returned = re.search(r"metrics = train\(cfg\)\s*#\s*(\{.*\})", code)
    assert returned, "the example no longer shows what train(cfg) returns"
    promised = re.findall(r'"([^"]+)":', returned.group(1))
    monkeypatch.chdir(tmp_path)  # the example's relative output dir lands here
    GlobalHydra.instance().clear()
    namespace: dict[str, object] = {}

    exec(compile(code, "docs/api.md", "exec"), namespace)

    metrics = namespace["metrics"]
    assert isinstance(metrics, dict) and promised
    assert all(math.isfinite(metrics[key]) for key in promised), (promised, metrics)
    output_dir = Path(str(namespace["cfg"].paths.output_dir))  # type: ignore[attr-defined]
    written = json.loads((tmp_path / output_dir / "metrics.json").read_text())
    assert written["epochs"] == 1


@pytest.mark.slow
def test_readme_install_and_train_command_then_eval(tmp_path):
    """The README's first training command as a user runs it, then eval of its best checkpoint
    reproduces the run's test metrics."""
    readme = ROOT / "README.md"
    block = _under("README.md", "## Install and train", "bash scripts/install.sh")
    command = command_after(readme, block.line - 1)
    assert command.program == "rnnlab.train" and command.args == (), command.describe()
    python = command.text.split()[0]
    assert python == ".venv/bin/python", command.describe()
    interpreter = ROOT / python
    if not interpreter.is_file():
        pytest.skip(f"{python} does not exist: run scripts/install.sh first")
    run, evaluated = tmp_path / "run", tmp_path / "eval"

    trained = subprocess.run(
        [str(interpreter), "-m", "rnnlab.train", f"hydra.run.dir={run}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    best = run / "checkpoints" / "best.ckpt"
    again = subprocess.run(
        [str(interpreter), "-m", "rnnlab.eval", f"ckpt_path={best}", f"hydra.run.dir={evaluated}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]

    metrics = json.loads((run / "metrics.json").read_text())
    eval_metrics = json.loads((evaluated / "metrics.json").read_text())
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert tested and {k: eval_metrics[k] for k in tested} == pytest.approx(tested, abs=1e-6)

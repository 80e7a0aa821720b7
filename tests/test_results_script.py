"""``scripts/results.py`` and the tables of docs/results.md agree: every table of its registry is
between its markers in the page with the same header, and rows formatted from metrics.json-like
dicts have the page rows' cells, text and number formats; one cheap table also runs end to
end."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")


def results_script() -> ModuleType:
    """Import ``scripts/results.py`` (it imports ``seeds`` from its own folder)."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("results")


RESULTS = results_script()


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table in ``text``: (header cells, rows of cells)."""
    found, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            found.append((cells(block[0]), [cells(row) for row in block[2:]]))
            block = []
    return found


def shape(cell: str) -> str:
    """A cell with its numbers' digits masked, integer parts to one: ``**0.978 ± 0.006**`` and
    ``**0.123 ± 0.045**`` have the same shape, ``0.98`` and ``14.6 s`` do not."""
    return re.sub(r"\d", "0", re.sub(r"\d+(?=\.\d)", "0", cell))


def fake_runs(table, runs) -> list[dict[str, float]]:
    """metrics.json-like dicts, one per seed of ``runs``, with every metric the table reads."""
    if runs is None:
        return []
    if isinstance(runs, RESULTS.Ensemble):  # one metrics.json for the whole ensemble
        runs = RESULTS.Runs(runs.runs.overrides, runs.seeds[:1])
    stats = [cell for row in table.rows for cell in row.cells if isinstance(cell, RESULTS.Stat)]
    metrics = list(dict.fromkeys(stat.metric for stat in stats))
    return [
        {m: 0.5 + 0.01 * seed + 0.001 * i for i, m in enumerate(metrics)} for seed in runs.seeds
    ]


def page_table(table) -> tuple[list[str], list[str], list[list[str]]]:
    """The lines between ``table``'s markers in the page (which must be exactly one Markdown
    table), its header cells and its rows' cells."""
    block = RESULTS.read_table(PAGE, table).split("\n")
    [(header, rows)] = markdown_tables("\n".join(block))
    assert all(line.startswith("|") for line in block), (
        f"docs/results.md: only the table goes between the markers of {table.name}"
    )
    return block, header, rows


def test_every_results_marker_names_a_registered_table():
    names = re.findall(r"^<!-- BEGIN results:(\S+) -->$", PAGE, flags=re.MULTILINE)
    assert sorted(names) == sorted(RESULTS.TABLES)


@pytest.mark.parametrize("name", list(RESULTS.TABLES))
def test_page_table_matches_the_registry(name):
    table = RESULTS.TABLES[name]
    block, header, page_rows = page_table(table)
    assert header == list(table.header), (
        f"docs/results.md's table {table.name} is headed {block[0]!r}, scripts/results.py's "
        f"{RESULTS.markdown_row(table.header)!r}; change one to match the other"
    )
    assert block[0] == RESULTS.markdown_row(table.header)
    assert len(page_rows) == len(table.rows)
    for row, page_row, page_line in zip(table.rows, page_rows, block[2:], strict=True):
        line = RESULTS.markdown_row(RESULTS.row_cells(row, fake_runs(table, row.runs)))
        assert shape(line) == shape(page_line)  # spacing too: --write-docs changes only numbers
        printed = cells(line)  # parses back as a row of the page's table
        assert len(printed) == len(page_row) == len(table.header)
        for spec, got, want in zip(row.cells, printed, page_row, strict=True):
            if isinstance(spec, RESULTS.Stat):
                assert shape(got) == shape(want), (spec.metric, got, want)
            else:  # fixed text, the seeds and published numbers: exactly the page's
                assert got == want


def test_render_then_replace_changes_only_that_table():
    table = RESULTS.TABLES["forecast"]
    lines = RESULTS.render(table, {runs: fake_runs(table, runs) for runs in table.runs()})
    assert lines[0] == RESULTS.markdown_row(table.header)
    assert len(lines) == 2 + len(table.rows)
    updated = RESULTS.replace_table(PAGE, table, lines)
    assert RESULTS.read_table(updated, table) == "\n".join(lines)
    old_block = RESULTS.read_table(PAGE, table)
    before, after = PAGE.split(old_block)
    assert updated == before + "\n".join(lines) + after  # the rest of the page untouched
    # rendering the page's own rows back changes nothing
    assert RESULTS.replace_table(PAGE, table, old_block.split("\n")) == PAGE


def test_write_docs_fails_before_any_run_when_a_marker_is_missing(tmp_path, monkeypatch):
    page = tmp_path / "results.md"
    page.write_text(PAGE.replace("<!-- END results:forecast -->\n", ""), encoding="utf-8")
    monkeypatch.setattr(RESULTS, "RESULTS_PAGE", page)
    monkeypatch.setattr(RESULTS, "run_all", lambda *_: pytest.fail("ran before the check"))
    with pytest.raises(SystemExit, match="has no line <!-- END results:forecast -->"):
        RESULTS.main(["--only", "forecast", "--write-docs"])


def test_write_readme_is_an_alias_of_write_docs(tmp_path, monkeypatch, capsys):
    page = tmp_path / "results.md"
    page.write_text(PAGE.replace("<!-- BEGIN results:covid3month -->\n", ""), encoding="utf-8")
    monkeypatch.setattr(RESULTS, "RESULTS_PAGE", page)
    monkeypatch.setattr(RESULTS, "run_all", lambda *_: pytest.fail("ran before the check"))
    with pytest.raises(SystemExit, match="has no line <!-- BEGIN results:covid3month -->"):
        RESULTS.main(["--only", "covid3month", "--write-readme"])
    assert "--write-readme is deprecated; use --write-docs" in capsys.readouterr().err


def test_a_missing_metric_names_it():
    table = RESULTS.TABLES["covid3month"]
    results = {
        row.runs: [{"test/rmse": 0.04}] * len(row.runs.seeds)
        for row in table.rows
        if row.runs is not None
    }
    with pytest.raises(SystemExit, match="test/rmse_train_mean"):
        RESULTS.render(table, results)


def test_seed_range():
    assert RESULTS.seed_range(range(1, 11)) == "1–10"
    assert RESULTS.seed_range([1]) == "1"
    assert RESULTS.seed_range([1, 3, 5]) == "1, 3, 5"


def test_dry_run_prints_each_run_once(capsys):
    RESULTS.main(["--dry-run"])
    commands = capsys.readouterr().out.splitlines()
    trained = [command for command in commands if " -m rnnlab.train seed=" in command]
    ensembled = [shlex.split(command) for command in commands if " -m rnnlab.ensemble " in command]
    # bilstm and bilstm + lstm_fcn seeds 201-210 (the seed ensembles reuse them) and the default
    # seed 42 of each; bilstm without its input dropout, seeds 201-210; gru, rnn, basicmotions,
    # basicmotions + lstm_fcn, forecast and covid3month
    # 5 each; charlm 3; then the fold ensembles' members: 5 folds of seeds 201 and 206 for each
    # JapaneseVowels model, of seed 201 for covid3month; the probabilistic forecasters: four
    # candidates on validation seeds 100-102, the chosen one on 5 unseen seeds, then it
    # calibrated on the same validation and unseen seeds; on fertility the candidates ran with
    # calibration (3 seeds each), then the chosen one with a longer budget (3), then six single
    # changes to it (3 each), and the final choice on 5 unseen seeds with and without
    # calibration, and the first and second choices on them; then the final choice with
    # coverage calibration on the validation seeds (3), and on 5 more unseen seeds with and
    # without it
    intervals = 4 * 3 + 5 + 3 + 5 + 4 * 3 + 3 + 6 * 3 + 5 + 5 + 5 + 5 + 3 + 5 + 5
    assert len(trained) == len(set(trained)) == 3 * 10 + 2 + 6 * 5 + 3 + 2 * 2 * 5 + 5 + intervals
    folds = [command for command in trained if " data.folds=5 data.fold=" in command]
    assert len(folds) == 25
    # for each JapaneseVowels model two ensembles of 5 seeds and two of 5 folds; for covid3month
    # one of each; all of runs trained above
    assert len(commands) == len(trained) + len(ensembled)
    assert len(ensembled) == len({tuple(command) for command in ensembled}) == 10
    for command in ensembled:
        [runs] = [word for word in command if word.startswith("runs=[")]
        for member in runs.removeprefix("runs=[").removesuffix("]").split(","):
            assert any(f"hydra.run.dir={member} " in run for run in trained)


def test_reuse_reads_finished_runs_and_trains_the_others(tmp_path, monkeypatch):
    overrides = ("experiment=forecast",)
    finished = tmp_path / RESULTS.slug(overrides) / "seed1" / "metrics.json"
    finished.parent.mkdir(parents=True)
    finished.write_text(json.dumps({"test/mae": 0.5}))
    trained = []

    def run_seed(seed, overrides, out):
        trained.append(seed)
        return {"test/mae": 0.7, "wall_s": 1.0}

    # a finished run that seeds.run_seed timed keeps its wall time (a column of some tables)
    timed = tmp_path / RESULTS.slug(overrides) / "seed3"
    timed.mkdir()
    (timed / "metrics.json").write_text(json.dumps({"test/mae": 0.6}))
    (timed / RESULTS.WALL_FILE).write_text(json.dumps({"wall_s": 12.5}))

    monkeypatch.setattr(RESULTS, "run_seed", run_seed)
    keys = [(overrides, 1), (overrides, 2), (overrides, 3)]
    done = RESULTS.run_all(keys, [], tmp_path, 1, reuse=True)
    assert trained == [2]
    assert done[(overrides, 1)] == {"test/mae": 0.5} and done[(overrides, 2)]["test/mae"] == 0.7
    assert done[(overrides, 3)] == {"test/mae": 0.6, "wall_s": 12.5}
    with pytest.raises(SystemExit):  # --reuse without --out: nothing to reuse
        RESULTS.main(["--reuse", "--only", "forecast"])


# a whole training run in a subprocess: in the slow suite, to keep the default one short
@pytest.mark.slow
def test_results_script_runs_one_table(tmp_path):
    """One seed of the cheapest table, one epoch: the printed table has the page's header."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "results.py"),
            "--only",
            "covid3month",
            "--seeds",
            "1",
            "--out",
            str(tmp_path),
            "--",
            "trainer.max_epochs=1",
            "model.encoder.hidden_size=8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [(header, rows)] = markdown_tables(done.stdout)
    assert header == page_table(RESULTS.TABLES["covid3month"])[1]
    assert [row[0] for row in rows][:4] == [
        "BiLSTM, 2 layers, max pooling, `maxabs` per series (ours, seeds 1)",
        "ensemble of the runs above (ours, averaged predictions)",
        "ensemble of one run per fold of `data.folds=5` (ours, seed 1)",
        "training-mean predictor (ours, same runs)",
    ]
    single, ensemble, by_fold = (float(row[1].strip("*")) for row in rows[:3])
    assert 0 < single < 1
    assert ensemble == pytest.approx(single, abs=1e-4)  # an ensemble of one run is that run
    assert 0 < by_fold < 1
    assert (tmp_path / "experiment-covid3month" / "seed1" / "metrics.json").is_file()
    assert (tmp_path / "experiment-covid3month" / "ensemble1-1" / "metrics.json").is_file()
    folded = tmp_path / "experiment-covid3month" / "ensemble1-1-folds5" / "metrics.json"
    assert json.loads(folded.read_text())["members"] == 5


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (RESULTS.BILSTM, 0.1),  # chosen in cross-validation (docs/results.md, Protocol)
        ((), 0.0),  # the plain default run, the archive table's recipe: not screened with it
        (RESULTS.FCN_JV, 0.0),  # screened with it and no better: keeps its branch
        (("experiment=gru",), 0.0),
        (("experiment=basicmotions",), 0.0),
    ],
)
def test_input_dropout_is_on_the_screened_rows_only(tmp_path, overrides, expected):
    cfg = compose_config("train", list(overrides), tmp_path)
    assert cfg.model.encoder.locked_input_dropout == expected


def test_a_seed_run_writes_its_wall_time_beside_its_metrics(tmp_path, monkeypatch):
    seeds = sys.modules["seeds"]  # loaded by results.py

    def train(command, check, stdout):
        run_dir = Path(next(a for a in command if a.startswith("hydra.run.dir=")).split("=", 1)[1])
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"test/acc": 0.9}))

    monkeypatch.setattr(seeds.subprocess, "run", train)
    metrics = seeds.run_seed(7, ["experiment=bilstm"], tmp_path)
    written = json.loads((tmp_path / "seed7" / seeds.WALL_FILE).read_text())
    assert metrics == {"test/acc": 0.9, "wall_s": written["wall_s"]}
    assert written["wall_s"] >= 0

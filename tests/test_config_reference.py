"""``scripts/config_reference.py``: the committed configuration reference is what the script writes
from ``conf/``, and on a small conf tree every key, default and comment lands where it should."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def config_reference_script() -> ModuleType:
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("config_reference")


SCRIPT = config_reference_script()


def test_committed_page_matches_conf() -> None:
    committed = SCRIPT.OUTPUT.read_text(encoding="utf-8") if SCRIPT.OUTPUT.is_file() else ""
    assert committed == SCRIPT.render_reference(SCRIPT.CONF_DIR), (
        f"{SCRIPT.OUTPUT.relative_to(ROOT)} is out of date with conf/: run {SCRIPT.COMMAND}"
    )


SYNTHETIC_CONF = {
    "train.yaml": """\
# Entry config of the synthetic command.
defaults:
  - _self_
  # the model group, swapped by model=NAME
  - model: small
  - optional experiment: null  # experiment=NAME

seed: 42  # same seed, same run
# the metric named once
monitor: val/loss
""",
    "model/small.yaml": """\
# A small model | for tests.
defaults:
  - encoder: rnn
  - _self_

_target_: pkg.Model
num_classes: ???  # filled in from the data
encoder:
  # width of each layer
  hidden_size: 32
metrics: [acc, f1]
monitor: ${monitor}
""",
    "model/encoder/rnn.yaml": """\
_target_: pkg.Encoder
cell: lstm  # rnn | lstm | gru
""",
    "experiment/long.yaml": """\
# @package _global_
# Longer runs.
#   python -m pkg.train experiment=long
defaults:
  - override /model: small

trainer:
  max_epochs: 100  # enough to converge
plugins:
  - _target_: pkg.Plugin
""",
    "logger/none.yaml": "# No logger (e.g. for tests). Nothing is written.\n",
}


@pytest.fixture
def synthetic_conf(tmp_path: Path) -> Path:
    conf_dir = tmp_path / "conf"
    for name, text in SYNTHETIC_CONF.items():
        (conf_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (conf_dir / name).write_text(text)
    return conf_dir


def rows_by_key(page: str) -> dict[str, list[str]]:
    """Each table row's cells after the key, by key (keys repeat across options: last wins)."""
    rows = {}
    for line in page.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_keys_defaults_and_comments(synthetic_conf: Path) -> None:
    configs = {(config.group, config.name): config for config in SCRIPT.read_all(synthetic_conf)}
    assert sorted(configs) == [
        ("", "train"),
        ("experiment", "long"),
        ("logger", "none"),
        ("model", "small"),
        ("model/encoder", "rnn"),
    ]
    assert configs["experiment", "long"].package == "_global_"
    assert configs["model/encoder", "rnn"].package == "model.encoder"

    page = SCRIPT.render_reference(synthetic_conf)
    rows = rows_by_key(page)
    assert rows["seed"] == ["`42`", "same seed, same run"]
    assert rows["monitor"] == ["`val/loss`", "the metric named once"]
    assert rows["model._target_"] == ["`pkg.Model`", ""]
    assert rows["model.num_classes"] == ["*required*", "filled in from the data"]
    assert rows["model.encoder.hidden_size"] == ["`32`", "width of each layer"]
    assert rows["model.metrics"] == ["`[acc, f1]`", ""]
    assert rows["model.monitor"] == ["`${monitor}`", ""]
    assert rows["model.encoder.cell"] == ["`lstm`", r"rnn \| lstm \| gru"]
    # a _global_ experiment's keys are overrides of the whole config's keys
    assert rows["trainer.max_epochs"] == ["`100`", "enough to converge"]
    assert rows["plugins"] == ["`[{_target_: pkg.Plugin}]`", ""]

    # file comments describe options, with example commands as code; @package is not text
    assert "Entry config of the synthetic command." in page
    section = page[page.index("### model=small") : page.index("## model/encoder")]
    assert r"A small model \| for tests." not in section and "A small model | for tests." in section
    assert "Longer runs.\n\n```bash\npython -m pkg.train experiment=long\n```" in page
    assert "@package" not in page
    assert "- `model: small`: the model group, swapped by model=NAME" in page
    assert "- `optional experiment: null`: experiment=NAME" in page
    assert "- `override /model: small`" in page
    assert "### logger=none { #logger-none }" in page and "No keys of its own." in page
    assert page.index("## experiment") < page.index("## logger") < page.index("## model {")
    assert page.index("## model {") < page.index("## model/encoder")


def test_groups_at_a_glance(synthetic_conf: Path) -> None:
    page = SCRIPT.render_reference(synthetic_conf)
    start = page.index("## Groups at a glance { #groups-at-a-glance }")
    assert start < page.index("## Commands { #commands }")
    overview = page[start : page.index("## Commands")]
    # a row per group, in the order of the page's sections; each option linked to its section's
    # anchor, with the first sentence of its file comment (none: the link alone)
    assert [line for line in overview.splitlines() if line.startswith("| [")] == [
        "| [`experiment`](#group-experiment) | [`long`](#experiment-long): Longer runs. |",
        "| [`logger`](#group-logger) | [`none`](#logger-none): No logger (e.g. for tests). |",
        r"| [`model`](#group-model) | [`small`](#model-small): A small model \| for tests. |",
        "| [`model/encoder`](#group-model-encoder) | [`rnn`](#model-encoder-rnn) |",
    ]
    for target in (
        "group-experiment",
        "experiment-long",
        "logger-none",
        "group-model",
        "model-small",
        "group-model-encoder",
        "model-encoder-rnn",
    ):
        assert f"{{ #{target} }}" in page


@pytest.mark.parametrize(
    ("header", "sentence"),
    [
        (["One sentence.", "Another one."], "One sentence."),
        (
            ["Set-up of Le et al. 2015 (the adding problem). Next."],
            "Set-up of Le et al. 2015 (the adding problem).",
        ),
        (
            ["Halve it (e.g. on a plateau. See below) when", "it stalls. Done."],
            "Halve it (e.g. on a plateau. See below) when it stalls.",
        ),
        (["Reads `pkg. Module` first. Then the rest."], "Reads `pkg. Module` first."),
        (
            ["no sentence end here; model.scheduler=null"],
            "no sentence end here; model.scheduler=null",
        ),
        (["  python -m pkg.train", "", "After the example. More."], "After the example."),
        ([], ""),
    ],
)
def test_first_sentence(header: list[str], sentence: str) -> None:
    assert SCRIPT.first_sentence(header) == sentence


def test_check_reports_a_stale_page(
    synthetic_conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "reference.md"
    args = ["--conf-dir", str(synthetic_conf), "--output", str(output)]
    assert SCRIPT.main([*args, "--check"]) == 1
    capsys.readouterr()
    assert SCRIPT.main(args) == 0
    assert SCRIPT.main([*args, "--check"]) == 0
    (synthetic_conf / "model" / "small.yaml").write_text("_target_: pkg.Other\n")
    assert SCRIPT.main([*args, "--check"]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1
    assert message.endswith(f"run {SCRIPT.COMMAND} {' '.join(args)}\n")

"""Every rnnlab command in README.md and docs/ composes, checked as the command itself checks its
command line before it starts: Hydra's own flag parser, then rnnlab's pre-flight check
(``rnnlab.run.command.check``: unknown keys and options with "did you mean", missing required
values, GPUs, run directories), sweeps at their first value. ``rnnlab.summary`` and
``rnnlab.data.export`` are checked against their own argparse parsers. The placeholder rules are
in tests/markdown_docs.py. The error lines the manual quotes are compared with what the commands
print."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
from importlib.metadata import entry_points
from pathlib import Path
from unittest import mock

import pytest
import torch
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser

from rnnlab.run import command as run_command
from rnnlab.run.command import check
from rnnlab.utils.config import config_dir
from rnnlab.utils.errors import ConfigError
from tests.markdown_docs import (
    ROOT,
    Command,
    doc_pages,
    extract_commands,
    fenced_blocks,
    page_commands,
)

HYDRA_MODULES = ("rnnlab.train", "rnnlab.eval", "rnnlab.predict", "rnnlab.generate",
                 "rnnlab.ensemble")  # fmt: skip
ARGPARSE_MODULES = ("rnnlab.summary", "rnnlab.data.export")
# Documented GPU commands (trainer=ddp trainer.devices=4) are for GPU machines: the check runs as
# on one with this many, so the result does not depend on the machine running the tests.
GPUS = 8

# At least this many commands per page (fenced and inline): an extractor that finds nothing, or
# misses a kind of line, fails here instead of passing every page vacuously. Raise a number
# when a page gains commands; lower it only when the page really lost them.
AT_LEAST = {
    "README.md": 16,
    "docs/clusters.md": 8,
    "docs/configuration.md": 8,
    "docs/ensembles.md": 9,
    "docs/extending.md": 2,
    "docs/getting-started.md": 8,
    "docs/reference/configuration.md": 25,
    "docs/reliability.md": 1,
    "docs/results.md": 21,
    "docs/security.md": 2,
    "docs/sweeps.md": 20,
    "docs/tasks/classification.md": 8,
    "docs/tasks/forecasting.md": 9,
    "docs/tasks/language-model.md": 8,
    "docs/tasks/probes.md": 2,
    "docs/tasks/regression.md": 4,
    "docs/your-data.md": 12,
}

COMMANDS = [command for page in doc_pages() for command in page_commands(page)]


def _ids(commands: list[Command]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for command in commands:
        seen[command.where] = seen.get(command.where, 0) + 1
        ids.append(command.where + (f"#{seen[command.where]}" if seen[command.where] > 1 else ""))
    return ids


def _module(program: str) -> str | None:
    """The module a documented program runs: ``rnnlab.x`` itself, or a console script's."""
    if not program.startswith("rnnlab-"):
        return program
    scripts = {ep.name: ep.value.split(":")[0] for ep in entry_points(group="console_scripts")}
    return scripts.get(program)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _hydra_problem(config_name: str, args: list[str]) -> str | None:
    parser_errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(parser_errors):
            parsed = get_args_parser().parse_args(args)
    except SystemExit:
        return f"Hydra's flag parser refuses it: {_last_line(parser_errors.getvalue())}"
    try:
        check(parsed.config_name or config_name, ["-m"] * parsed.multirun + parsed.overrides)
    except ConfigError as exc:
        return f"error: {exc}"
    return _swept_option_problem(parsed.overrides)


def _swept_option_problem(overrides: list[str]) -> str | None:
    """The check composes a sweep at its first value, as the command does; a later option of a
    swept config group (``callbacks=default,ema``) must exist too, or that job would fail."""
    for override in OverridesParser.create().parse_overrides(overrides):
        group = override.key_or_group
        folder = Path(config_dir()) / group
        if not override.is_discrete_sweep() or group.startswith("hydra") or not folder.is_dir():
            continue
        for option in override.sweep_string_iterator():
            if not (folder / f"{option}.yaml").is_file():
                return f"{override.input_line}: {group} has no option {option!r}"
    return None


class _Parsed(Exception):
    """Raised in place of running a command once its parser has accepted the arguments."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def _argparse_problem(module: str, args: list[str]) -> str | None:
    """Run the command's own ``main`` up to its ``parse_args`` and no further."""
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        raise _Parsed(original(self, args, namespace))

    parser_errors = io.StringIO()
    try:
        with (
            mock.patch.object(argparse.ArgumentParser, "parse_args", parse_only),
            contextlib.redirect_stderr(parser_errors),
        ):
            importlib.import_module(module).main(args)
    except _Parsed as parsed:
        namespace = parsed.namespace
    except SystemExit:
        return f"its argument parser refuses it: {_last_line(parser_errors.getvalue())}"
    else:
        return "main() returned without parsing its arguments"
    if module == "rnnlab.data.export" and not _ships(namespace.name):
        return f"{namespace.name!r} is neither a shipped series nor a shipped data set"
    return None


def _ships(name: str) -> bool:
    """Whether rnnlab.data.export has ``name`` to copy: a series of rnnlab's, or a data set
    folder inside the installed sktime (found without importing sktime, which takes seconds)."""
    from rnnlab.data.sources import SOURCES

    spec = importlib.util.find_spec("sktime")
    assert spec is not None and spec.origin is not None, "sktime is not installed"
    return name in SOURCES or (Path(spec.origin).parent / "datasets" / "data" / name).is_dir()


_CHECKED: dict[tuple[str, tuple[str, ...]], str | None] = {}


def command_problem(command: Command) -> str | None:
    """Why ``command`` would not start, in one line; None when it composes."""
    if command.error:
        return command.error
    module = _module(command.program)
    if module is None:
        return f"{command.program} is not an installed console script"
    key = (module, command.args)
    if key not in _CHECKED:  # the same command on several pages is checked once
        if module in HYDRA_MODULES:
            _CHECKED[key] = _hydra_problem(module.rsplit(".", 1)[1], list(command.args))
        elif module in ARGPARSE_MODULES:
            _CHECKED[key] = _argparse_problem(module, list(command.args))
        else:
            _CHECKED[key] = f"{module} is not an rnnlab command"
    return _CHECKED[key]


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A clean place to check from: relative run directories (hydra.run.dir=out) do not exist
    yet, no inherited log directory or DDP/SLURM worker variables, and GPUS GPUs."""
    monkeypatch.chdir(tmp_path)
    for name in ("RNNLAB_LOG_DIR", "LOCAL_RANK", "SLURM_PROCID", "HYDRA_FULL_ERROR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: GPUS)
    return tmp_path


# Each distinct command costs one Hydra composition, about 0.2 s: the README's (the front page,
# about a dozen distinct commands) are checked in the default run, the manual's hundred or so
# more (20-30 s on two CPU cores) with `pytest -m slow`.
DEFAULT_PAGES = ("README.md",)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(
            command, id=name, marks=() if command.file in DEFAULT_PAGES else pytest.mark.slow
        )
        for command, name in zip(COMMANDS, _ids(COMMANDS), strict=True)
    ],
)
def test_documented_command_composes(machine, command):
    problem = command_problem(command)
    assert problem is None, f"{command.describe()}\n  does not compose: {problem}"


@pytest.mark.parametrize(("page", "expected"), sorted(AT_LEAST.items()))
def test_extractor_finds_the_commands_of_each_page(page, expected):
    found = [c for c in COMMANDS if c.file == page]
    assert len(found) >= expected, (
        f"{page}: found {len(found)} rnnlab commands, expected at least {expected}:\n"
        + "\n".join(c.describe() for c in found)
    )


SYNTHETIC = """\
# A page

Train with `python -m rnnlab.train experiment=gru`; `rnnlab.eval` and `rnnlab-eval` are names.

```bash
# a comment line
.venv/bin/python -m rnnlab.train -m model.encoder.hidden_size=32,64 \\
  seed=1,2   # two seeds
python -m rnnlab.eval ckpt_path=logs/train/runs/<date_time>/checkpoints/best.ckpt
python scripts/figures.py --only sweep
OMP_NUM_THREADS=1 rnnlab-summary logs/sweep | head -3
```

- a list item with an indented block:

  ```bash
  python -m rnnlab.generate ckpt_path=<that best.ckpt> 'prompt="The # "' [output=x.txt]
  ```

```text
src/rnnlab/train.py    train(cfg) -> the user's metrics
```

A wrapped span `python -m rnnlab.summary
DIR --plot` and `python -m rnnlab.train <same overrides> resume=auto data.train_file=...`.
"""


def test_extractor_on_a_synthetic_page():
    found = [
        (c.line, c.program, c.args, c.skipped, c.inline)
        for c in extract_commands(SYNTHETIC, "page.md")
    ]
    assert found == [
        (3, "rnnlab.train", ("experiment=gru",), (), True),
        (7, "rnnlab.train", ("-m", "model.encoder.hidden_size=32,64", "seed=1,2"), (), False),
        (9, "rnnlab.eval", ("ckpt_path=logs/train/runs/doc-placeholder/checkpoints/best.ckpt",),
         (), False),
        (11, "rnnlab-summary", ("logs/sweep",), (), False),
        (17, "rnnlab.generate", ("ckpt_path=doc-placeholder", 'prompt="The # "', "output=x.txt"),
         (), False),
        (24, "rnnlab.summary", ("DIR", "--plot"), (), True),
        (25, "rnnlab.train", ("resume=auto", "data.train_file=doc-placeholder"),
         ("<same overrides>",), True),
    ]  # fmt: skip


def test_synthetic_commands_compose(machine):
    for command in extract_commands(SYNTHETIC, "page.md"):
        assert command_problem(command) is None, command.describe()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("python -m rnnlab.train model.encoder.hiden_size=3",
         "(did you mean model.encoder.hidden_size?)"),
        ("rnnlab-train -m callbacks=default,emma", "callbacks has no option 'emma'"),
        ("python -m rnnlab.train experiment=forcast", "unknown experiment 'forcast'"),
        ("python -m rnnlab.eval ckpt_path=<run>/best.ckpt --cfgg job", "--cfgg"),
        ("python -m rnnlab.predict ckpt_path=x.ckpt input=new.ts",
         "missing required value: output=..."),
        ("python -m rnnlab.summary DIR --plto", "--plto"),
        ("python -m rnnlab.data.export co2 co2.csv --split valid", "invalid choice: 'valid'"),
        ("python -m rnnlab.data.export co3 co2.csv", "'co3' is neither"),
        ("python -m rnnlab.trian", "rnnlab.trian is not an rnnlab command"),
        ("rnnlab-trian", "rnnlab-trian is not an installed console script"),
        ("python -m rnnlab.train 'seed=1", "cannot split"),
    ],
)  # fmt: skip
def test_a_documented_mistake_fails_the_check(machine, line, problem):
    [command] = extract_commands(f"```bash\n{line}\n```\n", "page.md")
    found = command_problem(command)
    assert found is not None and problem in found, found


# The error lines the manual quotes: a word that picks the documented line -> the command that
# prints it. Sweeps' "Checked first" block comes from the pre-flight check, in process.
CHECKED_FIRST = {
    "hiden_size": ("train", ["model.encoder.hiden_size=32"]),
    "slurmm": ("train", ["-m", "hydra/launcher=slurmm", "seed=1,2"]),
    "trainer.devices=64": ("train", ["trainer=gpu", "trainer.devices=64"]),
    "'forcast'": ("train", ["experiment=forcast"]),
    "missing required": ("predict", ["ckpt_path=model.ckpt"]),
}


def documented_errors(page: str, heading: str) -> list[str]:
    """The ``error:`` lines of the first fenced block after ``heading`` on ``page``."""
    text = (ROOT / page).read_text(encoding="utf-8")
    at = text.index(heading)
    start = text.count("\n", 0, at) + 1
    block = next(b for b in fenced_blocks(text) if b.line > start)
    return [line.strip() for line in block.lines if line.strip().startswith("error:")]


def _pick(lines: list[str], word: str) -> str:
    picked = [line for line in lines if word in line]
    assert len(picked) == 1, f"{word!r} picks {len(picked)} documented lines: {picked}"
    return picked[0]


def _machine_free(line: str) -> str:
    """The GPU count is the machine's, not the documentation's."""
    return re.sub(r"this machine has \d+", "this machine has N", line)


def test_every_checked_first_line_has_its_command():
    documented = documented_errors("docs/sweeps.md", "**Checked first.**")
    assert len(documented) == len(CHECKED_FIRST)
    assert sorted(documented) == sorted(_pick(documented, word) for word in CHECKED_FIRST)


@pytest.mark.parametrize("word", CHECKED_FIRST)
def test_checked_first_line_is_what_the_command_prints(machine, capsys, word):
    documented = _pick(documented_errors("docs/sweeps.md", "**Checked first.**"), word)
    config_name, argv = CHECKED_FIRST[word]

    def must_not_run(cfg):
        raise AssertionError("the check let the command run")

    with mock.patch("sys.argv", [config_name, *argv]), pytest.raises(SystemExit) as stopped:
        run_command.command(config_name, must_not_run)
    assert stopped.value.code == 2
    printed = capsys.readouterr().err.strip()
    assert _machine_free(printed) == _machine_free(documented), f"docs/sweeps.md: {documented}"


# Security's "Bad input" block: the lines a command prints without a crafted file, each from
# train(cfg) through run_task, the wrapper that prints the line and exits (in process). The other
# lines need files made for the purpose (tests/test_hostile.py stages such files).
BAD_INPUT = {
    "'NoSuchSet'": ["data.name=NoSuchSet"],
    "'transformer'": ["model.encoder.cell=transformer"],
    "lookback + horizon = 2326": ["experiment=forecast", "data.lookback=2300"],
    "data.horizon must be": ["experiment=forecast", "data.horizon=0"],
}


def matches_documented(printed: str, documented: str) -> bool:
    """Equal, except that a list the documentation elides (``ACSF1, ...``: the data sets shipped
    with the installed sktime) matches the list's first item followed by any further ones."""
    pattern = re.escape(documented).replace(re.escape(", ..."), r"(?:, [^,;()]+)*")
    return re.fullmatch(pattern, printed) is not None


def test_elided_list_matches_only_its_own_start():
    documented = "error: x (shipped: A, ...) or y"
    assert matches_documented("error: x (shipped: A, B, C) or y", documented)
    assert matches_documented("error: x (shipped: A) or y", documented)
    assert not matches_documented("error: x (shipped: B, C) or y", documented)
    assert not matches_documented("error: x (shipped: A, B) or z", documented)


@pytest.mark.parametrize("word", BAD_INPUT)
def test_bad_input_line_is_what_the_command_prints(machine, capsys, word):
    from rnnlab.run.job import run_task
    from rnnlab.train import train
    from tests.conftest import compose_config

    documented = _pick(documented_errors("docs/security.md", "## Bad input"), word)
    cfg = compose_config("train", BAD_INPUT[word], machine / "run")
    with pytest.raises(SystemExit) as stopped:
        run_task(train, cfg)
    assert stopped.value.code == 2
    printed = capsys.readouterr().err.strip()
    assert matches_documented(printed, documented), (
        f"docs/security.md documents\n  {documented}\nthe command prints\n  {printed}"
    )

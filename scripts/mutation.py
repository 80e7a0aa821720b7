"""Mutation testing of one module with mutmut, with only the tests relevant to it, in bounded time.

    nice -n 10 .venv/bin/python scripts/mutation.py src/rnnlab/data/normalize.py
    .venv/bin/python scripts/mutation.py rnnlab.data.windows --budget-min 10
    .venv/bin/python scripts/mutation.py src/rnnlab/ensemble.py --tests tests/test_ensemble.py
    .venv/bin/python scripts/mutation.py --list          # the modules with preset tests
    .venv/bin/python scripts/mutation.py normalize --write-docs   # + the score in docs/testing.md

mutmut changes one function at a time (an operator, a constant, a call's argument...) and runs
the tests that reach that function; a change no test notices *survives*. The run happens in a copy
of the checkout (``--workdir``, under the git-ignored ``logs/``), never in the working tree, so
other work in the tree is untouched; ``--revision HEAD`` copies the last commit instead of the
working tree. After ``--budget-min`` minutes mutmut is stopped and the mutants it did not reach
are reported as such. The copy stays behind for ``mutmut show NAME`` or ``mutmut browse`` in
``<workdir>``.

The report (Markdown, ``--report``) counts the verdicts, gives the score, killed / (killed +
survived), and lists every surviving mutant with its diff and, where one is recorded in
``scripts/mutation_equivalents.toml``, the reason it is equivalent (the program means the same
with it: no test can kill it). An entry there names the function and the mutated line, so a
renumbered mutant never inherits another's reason. ``--write-docs`` puts the module's row into
the scores table of docs/testing.md (between its ``mutation-scores`` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import tomllib
from docs_tables import read_block, replace_block

ROOT = Path(__file__).resolve().parents[1]
TESTING_PAGE = ROOT / "docs" / "testing.md"
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.toml"
SCORES_BLOCK = "mutation-scores"

# The modules where a silent bug would corrupt results, and the tests that exercise each. mutmut
# runs, of these, only the tests that reach the mutated function.
PRESETS: dict[str, tuple[str, ...]] = {
    "src/rnnlab/data/normalize.py": (
        "tests/test_normalize.py",
        "tests/test_data.py",
        "tests/test_integrity.py",
    ),
    # the .ts reader and its cache: every shipped file against sktime, in-process
    "src/rnnlab/data/ts_stream.py": ("tests/test_ts_cache.py", "tests/test_data_arrays.py"),
    "src/rnnlab/data/ts_cache.py": ("tests/test_ts_cache.py",),
    # a forecasting CSV read a block at a time and its cache, against the whole-table read
    "src/rnnlab/data/series_stream.py": ("tests/test_series_cache.py",),
    "src/rnnlab/data/series_cache.py": ("tests/test_series_cache.py",),
    "src/rnnlab/data/windows.py": (
        "tests/test_windows.py",
        "tests/test_forecast.py",
        "tests/test_integrity.py",
        "tests/test_covariates.py",
        "tests/test_window_settings.py",
    ),
    # the forecaster's known inputs: values checked in-process (test_covariates_predict.py
    # trains models; a mutant reached by its fixture would run minutes per test)
    "src/rnnlab/data/covariates.py": ("tests/test_covariates.py", "tests/test_forecast.py"),
    "src/rnnlab/data/forecast_input.py": ("tests/test_covariates.py", "tests/test_forecast.py"),
    # the probabilistic forecaster: scores, outputs and the autoregressive decoder, each on
    # tiny tensors in-process (test_probabilistic_forecast.py trains models: too slow a mutant)
    "src/rnnlab/models/intervals.py": ("tests/test_intervals.py", "tests/test_predictive.py"),
    "src/rnnlab/models/predictive.py": (
        "tests/test_predictive_values.py",
        "tests/test_predictive.py",
        "tests/test_autoregressive.py",
        "tests/test_intervals.py",
    ),
    "src/rnnlab/models/distributions.py": (
        "tests/test_predictive_values.py",
        "tests/test_predictive.py",
        "tests/test_autoregressive.py",
    ),
    "src/rnnlab/models/autoregressive.py": ("tests/test_autoregressive.py",),
    "src/rnnlab/models/calibration.py": ("tests/test_calibration.py",),
    "src/rnnlab/models/coverage_calibration.py": ("tests/test_coverage_calibration.py",),
    "src/rnnlab/models/encoder.py": (
        "tests/test_encoder_mutants.py",
        "tests/test_encoder_regularisers.py",
        "tests/test_encoder.py",
        "tests/test_diagnostics_values.py",
        "tests/test_diagnostics.py",
    ),
    "src/rnnlab/models/regularisers.py": (
        "tests/test_encoder_regularisers.py",
        "tests/test_encoder.py",
    ),
    "src/rnnlab/models/layerwise.py": (
        "tests/test_encoder_regularisers.py",
        "tests/test_encoder.py",
        "tests/test_diagnostics_values.py",
    ),
    # the text modules: values checked in-process (test_charlm.py trains models or starts
    # commands, minutes per surviving mutant, and its values are checked here on tiny inputs)
    "src/rnnlab/data/streams.py": ("tests/test_text_mutants.py", "tests/test_planted_bugs.py"),
    "src/rnnlab/data/ngram.py": ("tests/test_ngram_values.py", "tests/test_ngram_arrays.py"),
    "src/rnnlab/data/corpus.py": ("tests/test_text_mutants.py", "tests/test_planted_bugs.py"),
    "src/rnnlab/data/dedup.py": ("tests/test_dedup.py",),
    "src/rnnlab/data/text.py": ("tests/test_text_mutants.py", "tests/test_planted_bugs.py"),
    "src/rnnlab/ensemble.py": (
        "tests/test_ensemble_mutants.py",
        "tests/test_ensemble.py",
        "tests/test_planted_bugs.py",
    ),
    "src/rnnlab/callbacks/diagnostics.py": (
        "tests/test_diagnostics_values.py",
        "tests/test_diagnostics.py",
        "tests/test_planted_bugs.py",
    ),
    "src/rnnlab/checkpoint/build.py": (
        "tests/test_checkpoint_build_mutants.py",
        "tests/test_security.py",
        "tests/test_planted_bugs.py",
    ),
    "src/rnnlab/checkpoint/rebuild.py": (
        "tests/test_checkpoint_stored_mutants.py",
        "tests/test_security.py",
        "tests/test_planted_bugs.py",
    ),
    "src/rnnlab/checkpoint/format.py": (
        "tests/test_checkpoint_mutants.py",
        "tests/test_checkpoint_format.py",
        "tests/test_security.py",
    ),
    "src/rnnlab/checkpoint/allowlist.py": (
        "tests/test_checkpoint_build_mutants.py",
        "tests/test_security.py",
        "tests/test_user_classes.py",
    ),
    "src/rnnlab/checkpoint/stored.py": (
        "tests/test_checkpoint_stored_mutants.py",
        "tests/test_malformed_checkpoints.py",
    ),
    "src/rnnlab/checkpoint/weights.py": (
        "tests/test_checkpoint_stored_mutants.py",
        "tests/test_malformed_checkpoints.py",
    ),
    "src/rnnlab/checkpoint/training_state.py": (
        "tests/test_checkpoint_training_mutants.py",
        "tests/test_malformed_checkpoints.py",
    ),
}

# mutmut's verdicts (``mutmut.stats.status_by_exit_code``) grouped for the score: a mutant that
# made the tests fail, hang or crash is killed; one they passed with, or that no test reached,
# lives; the rest were not decided (not reached before the budget ran out, or undecidable).
KILLED = ("killed", "timeout", "caught by type check", "segfault")
LIVE = ("survived", "no tests")


@dataclass(frozen=True)
class Mutant:
    name: str  # mutmut's: <module>.<mangled function>__mutmut_<n>
    status: str
    diff: str = ""  # ``mutmut show`` of a live one

    @property
    def function(self) -> str:
        return self.name.rsplit("__mutmut_", 1)[0]

    def changed_lines(self) -> tuple[str, str]:
        """The diff's removed and added line (stripped; '' where there is none)."""
        lines = self.diff.splitlines()
        removed = [
            ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")
        ]
        added = [ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
        return (removed[0] if removed else "", added[0] if added else "")


@dataclass(frozen=True)
class Equivalent:
    """A surviving mutant that cannot be killed, and why (scripts/mutation_equivalents.toml)."""

    function: str
    mutated: str  # the mutated line as it reads in the mutant (the diff's added line)
    reason: str

    def matches(self, mutant: Mutant) -> bool:
        return mutant.function == self.function and mutant.changed_lines()[1] == self.mutated


@dataclass
class Outcome:
    """What one run found for one module."""

    module: str
    tests: tuple[str, ...]
    mutants: list[Mutant]
    minutes: float
    budget_min: float
    finished: bool
    equivalents: list[Equivalent] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(m.status for m in self.mutants)

    def live(self) -> list[Mutant]:
        return [m for m in self.mutants if m.status in LIVE]

    def reason(self, mutant: Mutant) -> str | None:
        return next((e.reason for e in self.equivalents if e.matches(mutant)), None)

    def killed(self) -> int:
        return sum(self.counts()[s] for s in KILLED)

    def decided(self) -> int:
        return self.killed() + len(self.live())

    def score(self) -> float | None:
        """killed / (killed + live); None when nothing was decided."""
        return self.killed() / self.decided() if self.decided() else None

    def score_without_equivalents(self) -> float | None:
        """The score with the equivalent mutants left out (they are not faults)."""
        equivalent = sum(1 for m in self.live() if self.reason(m) is not None)
        decided = self.decided() - equivalent
        return self.killed() / decided if decided else None


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def render_report(outcome: Outcome) -> str:
    """The Markdown report of a run: verdict counts, scores, every live mutant with its diff."""
    counts = outcome.counts()
    undecided = len(outcome.mutants) - outcome.decided()
    ran = f"{outcome.minutes:.1f} of {outcome.budget_min:g} minutes"
    lines = [
        f"# Mutation testing: `{outcome.module}`",
        "",
        f"Tests: {', '.join(f'`{t}`' for t in outcome.tests)}. mutmut ran {ran}"
        + (
            " and finished."
            if outcome.finished
            else f"; stopped by the budget ({undecided} not reached)."
        ),
        "",
        "| verdict | mutants |",
        "| --- | ---: |",
        *(f"| {status} | {n} |" for status, n in sorted(counts.items())),
        f"| **all** | {len(outcome.mutants)} |",
        "",
        f"Score, killed / (killed + survived): **{_percent(outcome.score())}**; without the "
        f"equivalent mutants: **{_percent(outcome.score_without_equivalents())}**.",
        "",
    ]
    live = outcome.live()
    untriaged = [m for m in live if outcome.reason(m) is None]
    lines += [
        f"## Surviving mutants ({len(live)}: {len(live) - len(untriaged)} equivalent, "
        f"{len(untriaged)} to kill or explain)",
        "",
    ]
    for mutant in live:
        reason = outcome.reason(mutant)
        said = f"equivalent: {reason}" if reason else f"**{mutant.status}**, not triaged"
        lines += [f"### `{mutant.name}`", "", said, "", "```diff", mutant.diff.strip(), "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


SCORES_HEADER = (
    "| module | mutants | killed | survived (equivalent) | not reached | score | "
    "without equivalents | run |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
)


def score_row(outcome: Outcome, day: str) -> str:
    live = outcome.live()
    equivalent = sum(1 for m in live if outcome.reason(m) is not None)
    undecided = len(outcome.mutants) - outcome.decided()
    budget = "" if outcome.finished else f", stopped at {outcome.budget_min:g} min"
    return (
        f"| `{outcome.module}` | {len(outcome.mutants)} | {outcome.killed()} | "
        f"{len(live)} ({equivalent}) | {undecided} | {_percent(outcome.score())} | "
        f"{_percent(outcome.score_without_equivalents())} | {day}{budget} |"
    )


def updated_scores(block: str, outcome: Outcome, day: str) -> str:
    """The scores table of ``block`` with this module's row replaced (or added), rows sorted by
    module."""
    rows = {
        line.split("|")[1].strip(): line for line in block.splitlines() if line.startswith("| `")
    }
    rows[f"`{outcome.module}`"] = score_row(outcome, day)
    return "\n".join([*SCORES_HEADER, *(rows[k] for k in sorted(rows))])


def load_equivalents(path: Path) -> list[Equivalent]:
    """The recorded equivalent mutants: ``[[equivalent]]`` tables of function, mutated, reason."""
    if not path.is_file():
        return []
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("equivalent", [])
    return [Equivalent(e["function"], e["mutated"].strip(), e["reason"]) for e in entries]


# --- running mutmut ---------------------------------------------------------------------------
def module_path(name: str) -> str:
    """``src/rnnlab/x/y.py`` for a path, a dotted module or a preset's file name (``windows``)."""
    if name.endswith(".py"):
        path = Path(name).resolve()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else name
    if name.startswith("rnnlab."):
        return "src/" + name.replace(".", "/") + ".py"
    found = [p for p in PRESETS if Path(p).stem == name]
    if len(found) != 1:
        raise SystemExit(f"error: {name!r} names no one preset module; see --list")
    return found[0]


def copy_checkout(dest: Path, revision: str) -> None:
    """The checkout's files into ``dest``: the working tree's (tracked and new, not ignored), or
    those of a commit."""
    dest.mkdir(parents=True)
    if revision == "worktree":
        listed = (
            subprocess.run(
                ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            .stdout.decode()
            .split("\0")
        )
        for name in filter(None, listed):
            source = ROOT / name
            if source.is_file():  # a deleted file is still listed until committed
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name)
        return
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def write_config(dest: Path, module: str, tests: Sequence[str]) -> None:
    """mutmut's settings for this run, in the copy's setup.cfg (read when pyproject.toml has no
    [tool.mutmut])."""
    if "[tool.mutmut]" in (dest / "pyproject.toml").read_text(encoding="utf-8"):
        raise SystemExit("error: pyproject.toml has [tool.mutmut]; this script writes setup.cfg")
    settings = {
        "source_paths": ["src/"],
        "only_mutate": [module],
        "pytest_add_cli_args_test_selection": list(tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        # the configs (found beside the package) and the scripts some tests import
        "also_copy": ["conf/", "scripts/"],
    }
    text = "[mutmut]\n" + "".join(
        f"{key}=\n" + "".join(f"    {v}\n" for v in values) for key, values in settings.items()
    )
    with (dest / "setup.cfg").open("a", encoding="utf-8") as cfg:
        cfg.write("\n" + text)


def run_mutmut(workdir: Path, budget_s: float, jobs: int, log: Path) -> bool:
    """``mutmut run`` in ``workdir`` until it finishes or ``budget_s`` runs out (then it is
    interrupted as by Ctrl-C, which keeps every verdict so far). True when it finished."""
    mutmut = Path(sys.executable).parent / "mutmut"
    # mutmut imports the mutated copy in its own processes only: a test that starts ``python -m
    # rnnlab...`` runs the unmutated package and can kill nothing (the slow suite, made of such
    # tests, is left out by pytest's own `-m 'not slow'`)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(mutmut), "run", "--max-children", str(jobs)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return False
    if proc.returncode != 0:  # e.g. the tests fail or do not import without any mutant
        raise SystemExit(
            f"error: mutmut failed (exit {proc.returncode}); the end of {log} says why"
        )
    return True


def read_mutants(workdir: Path, module: str) -> list[Mutant]:
    """Every mutant of ``module`` with its verdict, from mutmut's record (``<file>.meta``); the
    live ones with their diffs."""
    from mutmut.stats import status_by_exit_code

    meta = workdir / "mutants" / f"{module}.meta"
    if not meta.is_file():
        raise SystemExit(f"error: mutmut made no mutants of {module}; see {workdir}/mutmut.log")
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    mutants = []
    for name, code in sorted(codes.items(), key=lambda item: _natural(item[0])):
        status = status_by_exit_code[code]
        diff = _show(workdir, name, module) if status in LIVE else ""
        mutants.append(Mutant(name, status, diff))
    return mutants


def _natural(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


def _show(workdir: Path, name: str, module: str) -> str:
    """``mutmut show``'s diff, computed here (a ``mutmut show`` process per mutant takes
    seconds); mutmut reads its files relative to the working directory."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(workdir)
    try:
        return get_diff_for_mutant(name, path=module)
    finally:
        os.chdir(here)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", nargs="?", help="a file, dotted module or preset's stem")
    parser.add_argument("--tests", nargs="+", help="test files (default: the module's preset)")
    parser.add_argument("--budget-min", type=float, default=20.0, help="stop mutmut after this")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (CPU cores)")
    parser.add_argument("--revision", default="worktree", help="worktree, or a commit to copy")
    parser.add_argument("--workdir", type=Path, help="where the copy goes (logs/mutation/<m>)")
    parser.add_argument("--report", type=Path, help="the Markdown report (<workdir>/report.md)")
    parser.add_argument("--write-docs", action="store_true", help="score row into testing.md")
    parser.add_argument(
        "--no-run", action="store_true", help="report the workdir's last run again (after triage)"
    )
    parser.add_argument("--list", action="store_true", help="the preset modules and tests")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.list:
        for module, tests in PRESETS.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    if not args.module:
        parser.error("name a module (or --list)")
    module = module_path(args.module)
    if not (ROOT / module).is_file():
        raise SystemExit(f"error: {module} does not exist")
    tests = tuple(args.tests or PRESETS.get(module, ()))
    if not tests:
        raise SystemExit(f"error: {module} has no preset tests; pass --tests tests/test_x.py")
    workdir = args.workdir or ROOT / "logs" / "mutation" / Path(module).stem
    record = workdir / "run.json"  # how the last run went, for --no-run
    if args.no_run:
        if not record.is_file():
            raise SystemExit(f"error: {workdir} holds no finished run of this script")
        run = json.loads(record.read_text(encoding="utf-8"))
    else:
        if workdir.exists():
            shutil.rmtree(workdir)  # a fresh copy: verdicts of older tests would mislead
        copy_checkout(workdir, args.revision)
        write_config(workdir, module, tests)
        started = time.monotonic()
        finished = run_mutmut(workdir, args.budget_min * 60, args.jobs, workdir / "mutmut.log")
        minutes = (time.monotonic() - started) / 60
        run = {"tests": tests, "minutes": minutes, "budget": args.budget_min, "done": finished}
        record.write_text(json.dumps(run), encoding="utf-8")
    outcome = Outcome(
        module,
        tuple(run["tests"]),
        read_mutants(workdir, module),
        run["minutes"],
        run["budget"],
        run["done"],
        load_equivalents(EQUIVALENTS),
    )
    report = args.report or workdir / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(outcome), encoding="utf-8")
    if args.write_docs:
        page = TESTING_PAGE.read_text(encoding="utf-8")
        block = read_block(page, SCORES_BLOCK, TESTING_PAGE)
        table = updated_scores(block, outcome, date.today().isoformat())
        TESTING_PAGE.write_text(replace_block(page, SCORES_BLOCK, table, TESTING_PAGE), "utf-8")
    print(
        f"{module}: {len(outcome.mutants)} mutants, {outcome.killed()} killed, "
        f"{len(outcome.live())} alive; score {_percent(outcome.score())} "
        f"({_percent(outcome.score_without_equivalents())} without equivalents); "
        f"report {report}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

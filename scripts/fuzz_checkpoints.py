"""Fuzz rnnlab's commands with malformed checkpoints and print what happened to each:

    .venv/bin/python scripts/fuzz_checkpoints.py --count 500 --seed 0
    .venv/bin/python scripts/fuzz_checkpoints.py --count 50 --seed 3 --show 5   # a few failures

From a genuine checkpoint of every task (classification, forecasting, sequence regression and a
character language model, each trained for one short epoch), each mutant changes stored config
values, the data state, Lightning's state, the weights or the file's bytes
(``checkpoint_mutations.py``), then runs through ``rnnlab.eval``, ``rnnlab.predict``,
``rnnlab.generate`` (language models) or a resume (``rnnlab.train ... ckpt_path=``). Mutant ``i``
of seed ``s`` is the same on every machine and in every count, so a failure repeats alone.

Every mutant must end in exit 0 with a sound result (finite metrics, a prediction table, the
text) or exit 2 with one line on stderr: never a traceback, a kill by the memory limit or the
time limit, or a file changed outside its own folder. Importing torch and Lightning takes
seconds, so this process imports the commands once and forks a child per mutant, which limits
its address space (``RLIMIT_AS``) and time, then calls the command's ``main`` as the console
script would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkpoint_mutations as mutations
from forking import fork_on_one_thread

# the commands' settings for a short run; the tasks' own besides
FAST = [
    "trainer.accelerator=cpu",
    "model.encoder.hidden_size=16",
    "callbacks.learning_rate_monitor=null",
    "trainer.enable_progress_bar=false",
    "logger=none",
]
CORPUS = "the quick brown fox jumps over the lazy dog. " * 60
TASKS: dict[str, list[str]] = {
    "classification": ["data.name=BasicMotions"],  # small: 40 + 40 samples, 6 channels
    "forecasting": ["experiment=forecast"],
    "regression": ["experiment=covid3month"],
    "language model": [
        "experiment=charlm",
        "model.embedding_size=8",
        "data.batch_size=4",
        "data.bptt=16",
        "data.ngram_max_order=3",
    ],
}
PREDICT_INPUT = {
    "classification": "JapaneseVowels",
    "forecasting": "co2",
    "regression": "Covid3Month",
}
COMMANDS = ("eval", "predict", "generate", "resume")
BYTES = "raw bytes"
KINDS = (*mutations.MUTATIONS, BYTES)
OUTCOMES = (
    "exit 0",
    "exit 2",
    "traceback",
    "not one line",
    "memory",
    "timeout",
    "killed",
    "unsound result",
    "touched outside",
)


@dataclass(frozen=True)
class Mutant:
    index: int
    task: str
    command: str
    kind: str


@dataclass
class Result:
    mutant: Mutant
    outcome: str
    status: int
    what: str = ""
    stderr: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def plan(seed: int, index: int, tasks: tuple[str, ...] = tuple(TASKS)) -> Mutant:
    """Mutant ``index`` of ``seed``: its task (one of ``tasks``), command and kind of mutation."""
    rng = random.Random(f"{seed}:{index}:plan")
    task = rng.choice(list(tasks))
    commands = ["eval", "predict", "resume"] + (
        ["generate"] * 2 if task == "language model" else []
    )
    return Mutant(index, task, rng.choice(commands), rng.choice(KINDS))


# --- the genuine checkpoints -------------------------------------------------------------------
def train_bases(root: Path, tasks: tuple[str, ...]) -> None:
    """One short run of each task under ``root/bases/<task>``, and the prediction inputs."""
    from rnnlab.data.export import export
    from rnnlab.train import train

    (root / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    for task in tasks:
        overrides = TASKS[task]
        if base_dir(root, task).is_dir():
            continue
        extra = [f"data.file={root / 'corpus.txt'}"] if task == "language model" else []
        run = root / "bases" / task.replace(" ", "_")
        cfg = compose_config([*FAST, "trainer.max_epochs=1", *overrides, *extra], run)
        train(cfg)
        if task in PREDICT_INPUT:
            name = PREDICT_INPUT[task]
            export(
                name,
                root / "inputs" / f"{task.replace(' ', '_')}.{'csv' if name == 'co2' else 'ts'}",
            )


def compose_config(overrides: list[str], output_dir: Path) -> Any:
    """``conf/train.yaml`` with ``overrides``, its run directory ``output_dir``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from rnnlab.utils.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def base_dir(root: Path, task: str) -> Path:
    return root / "bases" / task.replace(" ", "_") / "checkpoints"


def command_line(root: Path, mutant: Mutant, folder: Path) -> tuple[str, list[str]]:
    """The module whose ``main`` runs the mutant, and its command line."""
    ckpt = folder / "checkpoints" / "last.ckpt"
    common = [f"hydra.run.dir={folder / 'run'}", "trainer.accelerator=cpu"]
    task = mutant.task.replace(" ", "_")
    if mutant.command == "eval":
        return "rnnlab.eval", [
            f"ckpt_path={ckpt}",
            "logger=none",
            "trainer.enable_progress_bar=false",
            *common,
        ]
    if mutant.command == "predict":
        inputs = sorted((root / "inputs").glob(f"{task}.*")) or [root / "corpus.txt"]
        return "rnnlab.predict", [
            f"ckpt_path={ckpt}",
            f"input={inputs[0]}",
            f"output={folder / 'predictions.csv'}",
            *common,
        ]
    if mutant.command == "generate":
        return "rnnlab.generate", [
            f"ckpt_path={ckpt}",
            "length=20",
            f"hydra.run.dir={folder / 'run'}",
        ]
    extra = [f"data.file={root / 'corpus.txt'}"] if mutant.task == "language model" else []
    return "rnnlab.train", [
        *FAST,
        *TASKS[mutant.task],
        *extra,
        f"ckpt_path={ckpt}",
        "trainer.max_epochs=2",
        *common,
    ]


# --- one mutant, in a child process ------------------------------------------------------------
def write_mutant(root: Path, mutant: Mutant, seed: int, folder: Path) -> str:
    """The mutant's checkpoint at ``folder/checkpoints/last.ckpt`` (the genuine best one
    beside it, as a resume finds it); what was changed."""
    import torch

    rng = random.Random(f"{seed}:{mutant.index}:mutation")
    source = base_dir(root, mutant.task)
    target = folder / "checkpoints"
    target.mkdir(parents=True)
    shutil.copyfile(source / "best.ckpt", target / "best.ckpt")
    if mutant.kind == BYTES:
        data, what = mutations.mutate_bytes(rng, (source / "last.ckpt").read_bytes())
        (target / "last.ckpt").write_bytes(data)
        return what
    # its paths still name the genuine run's folder, as in a run folder copied elsewhere
    checkpoint = torch.load(source / "last.ckpt", weights_only=True)
    what = mutations.MUTATIONS[mutant.kind](rng, checkpoint, root / "decoy")
    torch.save(checkpoint, target / "last.ckpt")
    return what


def run_child(root: Path, mutant: Mutant, seed: int, folder: Path, memory: int, limit: int) -> None:
    """In the forked child: write the mutant, limit memory and time, run the command; exits."""
    code = 1
    try:
        what = write_mutant(root, mutant, seed, folder)
        (folder / "what.txt").write_text(what, encoding="utf-8")
        module, args = command_line(root, mutant, folder)
        os.chdir(folder)
        os.environ.update(
            {"HOME": str(folder), "TMPDIR": str(folder), "RNNLAB_LOG_DIR": str(folder / "logs")}
        )
        os.environ.pop("HYDRA_FULL_ERROR", None)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        # the files, also where this process had other streams (pytest's captured ones)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        signal.alarm(limit)
        sys.argv = [module, *args]
        main = __import__(module, fromlist=["main"]).main
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except MemoryError:
            traceback.print_exc()
            code = 3
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# --- judging a finished mutant -----------------------------------------------------------------
MEMORY_WORDS = (
    "MemoryError",
    "can't allocate memory",
    "Cannot allocate memory",
    "std::bad_alloc",
    "out of memory",
)


def judge(root: Path, mutant: Mutant, folder: Path, wait_status: int, seconds: float) -> Result:
    stderr = _read(folder / "stderr")
    what = _read(folder / "what.txt")
    result = Result(mutant, "", -1, what, stderr, seconds)
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        result.status = -signum
        result.outcome = "timeout" if signum == signal.SIGALRM else "killed"
        return result
    result.status = os.WEXITSTATUS(wait_status)
    lines = stderr.strip().splitlines()
    if any(word in stderr for word in MEMORY_WORDS) or result.status == 3:
        result.outcome = "memory"
    elif "Traceback" in stderr:
        result.outcome = "traceback"
    elif result.status == 2:
        errors = [line for line in lines if line.startswith("error: ")]
        result.outcome = "exit 2" if len(errors) == 1 and lines[-1] == errors[0] else "not one line"
    elif result.status == 0:
        problem = unsound(folder, mutant)
        result.outcome = "unsound result" if problem else "exit 0"
        result.notes += [problem] if problem else []
    else:
        result.outcome = "not one line"
    return result


def unsound(folder: Path, mutant: Mutant) -> str:
    """Why an exit 0's result is not a sound one ('' when it is)."""
    if mutant.command == "generate":
        text = _read(folder / "stdout")
        return "" if len(text.strip()) >= 20 else f"generated {text!r}"
    if mutant.command == "predict":
        table = folder / "predictions.csv"
        if not table.is_file():
            return "no predictions.csv"
        body = table.read_text(encoding="utf-8").lower()
        return "predictions hold nan or inf" if "nan" in body or "inf" in body else ""
    metrics = folder / "run" / "metrics.json"
    if not metrics.is_file():
        return "no metrics.json"
    values = json.loads(metrics.read_text(encoding="utf-8"))
    bad = [
        k
        for k, v in values.items()
        if isinstance(v, float) and not math.isfinite(v) and not k.startswith("time/")
    ]
    return f"non-finite metrics {bad}" if bad else ""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` outside the mutants' folders: size and modification time."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and "mutants" not in path.relative_to(root).parts[:1]:
            stat = path.stat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


# --- the whole run ------------------------------------------------------------------------------
def prepare(root: Path, tasks: tuple[str, ...]) -> None:
    """The genuine checkpoints (trained in a child, so this process never runs torch), the
    decoy files mutants point paths at, and the commands imported for every child."""
    if not all(base_dir(root, task).is_dir() for task in tasks):
        pid = fork_on_one_thread()
        if pid == 0:
            code = 0
            try:
                train_bases(root, tasks)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("training the genuine checkpoints failed")
    decoy = root / "decoy"
    decoy.mkdir(exist_ok=True)
    (decoy / "victim.ckpt").write_bytes(b"not a checkpoint, and must stay unchanged\n")
    for module in ("rnnlab.eval", "rnnlab.predict", "rnnlab.generate", "rnnlab.train"):
        __import__(module)
    # what every child would import again (every allowed class, sktime's readers), imported
    # once here: each child starts with it
    from rnnlab.checkpoint import allowed_places
    from rnnlab.data.ucr import shipped_names

    allowed_places()
    shipped_names()


def fuzz(
    root: Path,
    count: int,
    seed: int,
    jobs: int = 1,
    memory_mib: int = 3072,
    limit_s: int = 120,
    start: int = 0,
    keep: bool = False,
    tasks: tuple[str, ...] = tuple(TASKS),
) -> list[Result]:
    """Run mutants ``start`` .. ``start + count - 1`` of ``seed`` (drawn among ``tasks``); their
    results in order."""
    prepare(root, tasks)
    base_vm = _vm_bytes()
    memory = base_vm + memory_mib * 2**20
    results: dict[int, Result] = {}
    running: dict[int, tuple[Mutant, Path, float]] = {}
    pending = [plan(seed, i, tasks) for i in range(start, start + count)]
    before = snapshot(root)
    while pending or running:
        while pending and len(running) < jobs:
            mutant = pending.pop(0)
            folder = root / "mutants" / str(mutant.index)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            pid = fork_on_one_thread()
            if pid == 0:
                run_child(root, mutant, seed, folder, memory, limit_s)
            running[pid] = (mutant, folder, time.perf_counter())
        pid, status = os.wait()
        mutant, folder, started = running.pop(pid)
        result = judge(root, mutant, folder, status, time.perf_counter() - started)
        results[mutant.index] = result
        if result.outcome in ("exit 0", "exit 2") and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    after = snapshot(root)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if changed:  # no folder of its own to blame: every mutant of this run is suspect
        for result in results.values():
            result.notes.append(f"changed outside: {changed[:3]}")
            result.outcome = "touched outside"
    return [results[i] for i in sorted(results)]


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def table(results: list[Result]) -> str:
    """Outcome counts per command and kind of mutation, as a Markdown table."""
    counts = Counter((r.mutant.command, r.outcome) for r in results)
    rows = [
        "| command | " + " | ".join(OUTCOMES) + " | total |",
        "|---|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    for command in COMMANDS:
        total = sum(counts[(command, o)] for o in OUTCOMES)
        if total:
            cells = " | ".join(str(counts[(command, o)]) for o in OUTCOMES)
            rows.append(f"| {command} | {cells} | {total} |")
    cells = " | ".join(str(sum(counts[(c, o)] for c in COMMANDS)) for o in OUTCOMES)
    rows.append(f"| all | {cells} | {len(results)} |")
    return "\n".join(rows)


FAILURES = (
    "traceback",
    "not one line",
    "memory",
    "timeout",
    "killed",
    "unsound result",
    "touched outside",
)


def failures(results: list[Result]) -> list[Result]:
    return [r for r in results if r.outcome in FAILURES]


def describe(result: Result) -> str:
    m = result.mutant
    tail = "\n    ".join(result.stderr.strip().splitlines()[-4:])
    notes = "; ".join(result.notes)
    return (
        f"mutant {m.index} ({m.task}, {m.command}, {m.kind}: {result.what}) -> "
        f"{result.outcome} (status {result.status}) {notes}\n    {tail}"
    )


def record(result: Result) -> dict[str, Any]:
    """A mutant's result as plain values: what it was, how it ended, its last stderr line."""
    lines = result.stderr.strip().splitlines()
    return {
        **{k: getattr(result.mutant, k) for k in ("index", "task", "command", "kind")},
        "what": result.what,
        "outcome": result.outcome,
        "status": result.status,
        "seconds": round(result.seconds, 2),
        "last_line": lines[-1] if lines else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="how many mutants")
    parser.add_argument("--seed", type=int, default=0, help="which mutants (same seed, same)")
    parser.add_argument("--start", type=int, default=0, help="first mutant's index")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument(
        "--memory-mib",
        type=int,
        default=3072,
        help="address space each mutant may add to this process's",
    )
    parser.add_argument("--timeout", type=int, default=120, help="seconds per mutant")
    parser.add_argument("--root", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--show", type=int, default=10, help="failures printed in full")
    parser.add_argument("--keep", action="store_true", help="keep every mutant's folder")
    parser.add_argument("--log", type=Path, help="write one JSON line per mutant to this file")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="rnnlab-fuzz-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = fuzz(
        root, args.count, args.seed, args.jobs, args.memory_mib, args.timeout, args.start, args.keep
    )
    print(table(results))
    if args.log:
        with args.log.open("w", encoding="utf-8") as log:
            for result in results:
                log.write(json.dumps(record(result)) + "\n")
    kinds = Counter(r.mutant.kind for r in results)
    print("mutations: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    bad = failures(results)
    for result in bad[: args.show]:
        print(describe(result))
    print(
        f"{len(results)} mutants, {len(bad)} failures, {time.perf_counter() - started:.0f} s; "
        f"folders under {root}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

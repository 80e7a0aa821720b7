"""Fuzz rnnlab's readers of user files with mutated CSV, ``.ts`` and text files, and print what
happened to each:

    .venv/bin/python scripts/fuzz_inputs.py --count 500 --seed 0
    .venv/bin/python scripts/fuzz_inputs.py --count 500 --seed 0 --train-every 25 --keep /tmp/m

From a small valid file of each kind (a forecasting CSV with dates and a covariate, the same
with two series, a classification and a regression ``.ts`` file, a UTF-8 and a UTF-16 text),
each mutant changes bytes (flips, insertions of NUL, byte-order marks and invalid UTF-8, cuts,
repeats) or values (a cell or a sample value set to text, NaN, inf, 1e-300, 1e39, a time with
another UTC offset, an interpolation; a header tag dropped or doubled). It is then read as
training data (the DataModule's ``setup`` and first batch) and as the input of a trained model
(``setup_predict``, or the text ``rnnlab.eval data.file=`` scores); every ``--train-every``-th
mutant also trains for one epoch through ``rnnlab.train``'s command.

Each must end in a result or in one line (a ``UserError``, or exit status 2): never a traceback,
a kill by the memory limit (``--memory-mb`` more address space than the parent's) or a hang.
Importing torch costs seconds, so this process imports once and forks a child per mutant.
Mutant ``i`` of seed ``s`` is the same on every machine and in every count.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import resource
import signal
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forking import fork_on_one_thread

OUTCOMES_OK = ("read", "refused")
RANK = ("traceback", "memory", "refused", "read")  # the worst of a mutant's readings counts
KINDS = ("csv", "csv_series", "ts_class", "ts_regression", "text", "text_utf16")
SUFFIXES = dict(zip(KINDS, ("csv", "csv", "ts", "ts", "txt", "txt"), strict=True))
# values a mutated cell or sample may take: the ones a careless export or a hostile file holds
ODD_VALUES = [
    "",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e-300",
    "-1e-320",
    "1e39",
    "3.5e38",
    "1e308",
    "0x1F",
    "abc",
    "${seed}",
    "${oc.env:HOME}",
    "9" * 400,
    "-0",
    "1,5",
    '"',
    "'",
    "\\",
    "\u00e9",
    "2021-03-28T02:30:00+02:00",
    "2021-03-28T02:30:00",
    "1970-01-01",
    "9999-12-31",
    "NaT",
    "True",
    " ",
    "\t",
    ":",
    ",",
    "@data",
    "?",
]
ODD_BYTES = [
    b"\x00",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"\x80",
    b"\r",
    b"\n",
    b"\n\n",
    b",",
    b":",
    b'"',
    b"\x1a",
    b"\xff\xfe\x00\x00",
]


def base_files(folder: Path) -> dict[str, Path]:
    """One small valid file per kind."""
    rng = random.Random(0)
    days = [f"2020-01-{d:02d}" for d in range(1, 32)] + [f"2020-02-{d:02d}" for d in range(1, 30)]
    rows = [f"{t},{10 + (i % 7) + rng.random():.3f},{rng.random():.3f}" for i, t in enumerate(days)]
    files = {
        "csv": "date,value,price\n" + "\n".join(rows) + "\n",
        "csv_series": "date,value,price,store\n"
        + "\n".join(f"{r},{s}" for s in ("a", "b") for r in rows[:30])
        + "\n",
    }
    series = [[round(rng.gauss(k, 1), 3) for _ in range(12)] for k in range(24)]
    header = "@problemName toy\n@timeStamps false\n@missing true\n@univariate true\n"
    header += "@equalLength true\n@seriesLength 12\n"
    files["ts_class"] = (
        header
        + "@classLabel true a b\n@data\n"
        + "".join(",".join(map(str, s)) + f":{'ab'[k % 2]}\n" for k, s in enumerate(series))
    )
    files["ts_regression"] = (
        header
        + "@targetLabel true\n@data\n"
        + "".join(",".join(map(str, s)) + f":{k / 3:.3f}\n" for k, s in enumerate(series))
    )
    prose = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 12
    files["text"] = prose
    paths = {}
    for kind, content in files.items():
        paths[kind] = folder / f"base_{kind}.{SUFFIXES[kind]}"
        paths[kind].write_text(content, encoding="utf-8")
    paths["text_utf16"] = folder / "base_text_utf16.txt"
    paths["text_utf16"].write_bytes(prose.encode("utf-16"))
    return paths


def mutate(raw: bytes, kind: str, rng: random.Random) -> bytes:
    """One to three byte- or value-level changes of ``raw``."""
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5 and not kind.startswith("text_"):
            raw = _mutate_value(raw, kind, rng)
        else:
            raw = _mutate_bytes(raw, rng)
    return raw


def _mutate_bytes(raw: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(raw) + 1)
    end = min(len(raw), at + rng.randint(1, 40))
    how = rng.choice(["flip", "insert", "delete", "repeat", "truncate", "long_line"])
    if how == "flip" and raw:
        at = min(at, len(raw) - 1)
        return raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :]
    if how == "insert":
        return raw[:at] + rng.choice(ODD_BYTES) + raw[at:]
    if how == "delete":
        return raw[:at] + raw[end:]
    if how == "repeat":
        return raw[:end] + raw[at:end] * rng.randint(2, 50) + raw[end:]
    if how == "truncate":
        return raw[:at]
    return raw[:at] + b"1," * rng.randint(100, 5000) + raw[at:]


def _mutate_value(raw: bytes, kind: str, rng: random.Random) -> bytes:
    lines = raw.decode("utf-8", errors="replace").split("\n")
    row = rng.randrange(len(lines))
    separator = ":" if kind.startswith("ts") and rng.random() < 0.3 else ","
    cells = lines[row].split(separator)
    how = rng.choice(["value", "value", "drop_cell", "extra_cell", "swap_rows", "drop_line"])
    if how == "value":
        cells[rng.randrange(len(cells))] = rng.choice(ODD_VALUES)
    elif how == "drop_cell" and len(cells) > 1:
        del cells[rng.randrange(len(cells))]
    elif how == "extra_cell":
        cells.insert(rng.randrange(len(cells) + 1), rng.choice(ODD_VALUES))
    elif how == "swap_rows":
        other = rng.randrange(len(lines))
        lines[row], lines[other] = lines[other], lines[row]
        return "\n".join(lines).encode("utf-8")
    elif how == "drop_line":
        del lines[row]
        return "\n".join(lines).encode("utf-8")
    lines[row] = separator.join(cells)
    return "\n".join(lines).encode("utf-8")


def _first_batch(loader: Any) -> None:
    next(iter(loader), None)


def readings(kind: str, path: Path, base: Path) -> list[Callable[[], None]]:
    """The ways rnnlab reads ``path``: as training data (``setup`` and a first batch; a .ts
    file also through the disk cache), and as the input of a module fitted on ``base``
    (``setup_predict``, or the text ``rnnlab.eval data.file=`` scores)."""
    from rnnlab.data.classification import ClassificationDataModule
    from rnnlab.data.forecast import ForecastDataModule
    from rnnlab.data.regression import RegressionDataModule
    from rnnlab.data.text import TextDataModule

    make: Callable[[str], Any]
    if kind.startswith("csv"):
        series = {"series_column": "store"} if kind == "csv_series" else {}

        def make(file: str) -> Any:
            return ForecastDataModule(
                file=file,
                time_column="date",
                target_columns=["value"],
                covariate_columns=["price"],
                lookback=6,
                horizon=2,
                season_length=1,
                missing="interpolate",
                batch_size=8,
                **series,
            )
    elif kind.startswith("ts"):
        cls = ClassificationDataModule if kind == "ts_class" else RegressionDataModule

        def make(file: str) -> Any:
            return cls(train_file=file, test_file=str(base), val_fraction=0.25, batch_size=8)
    else:
        encoding = "utf-16" if kind == "text_utf16" else "utf-8"

        def make(file: str) -> Any:
            return TextDataModule(
                file=file, encoding=encoding, batch_size=2, bptt=8, ngram_max_order=3
            )

    def as_training_data() -> None:
        data = make(str(path))
        data.setup("fit")
        _first_batch(data.train_dataloader())
        _first_batch(data.test_dataloader())

    def as_input() -> None:
        trained = make(str(base))
        trained.setup("fit")
        if kind.startswith("text"):
            trained.use_test_file(str(path))
            trained.setup("test")
            _first_batch(trained.test_dataloader())
        else:
            trained.setup_predict(str(path))
            _first_batch(trained.predict_dataloader())

    def as_cached_training_data() -> None:  # .ts files: streamed into the disk cache
        data = make(str(path))
        data.cache_dir = str(path.parent / "cache")
        data.setup("fit")
        _first_batch(data.train_dataloader())

    if kind.startswith("ts"):
        return [as_training_data, as_input, as_cached_training_data]
    return [as_training_data, as_input]


def train_command(kind: str, path: Path, base: Path, run_dir: Path) -> list[str]:
    fast = [
        "trainer.max_epochs=1",
        "model.encoder.hidden_size=4",
        "trainer.accelerator=cpu",
        "callbacks.learning_rate_monitor=null",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    if kind.startswith("csv"):
        series = ["data.series_column=store"] if kind == "csv_series" else []
        return [
            "experiment=forecast_csv",
            f"data.file={path}",
            "data.time_column=date",
            "data.target_columns=[value]",
            "data.covariate_columns=[price]",
            "data.lookback=6",
            "data.horizon=2",
            "data.season_length=1",
            *series,
            *fast,
        ]
    if kind.startswith("ts"):
        task = [] if kind == "ts_class" else ["experiment=covid3month"]
        files = [f"data.train_file={path}", f"data.test_file={base}"]
        return [*task, *files, f"data.cache_dir={path.parent / 'cache'}", *fast]
    encoding = ["data.encoding=utf-16"] if kind == "text_utf16" else []
    return [
        "experiment=charlm",
        f"data.file={path}",
        "data.batch_size=2",
        "data.bptt=8",
        "data.ngram_max_order=3",
        "model.embedding_size=4",
        *encoding,
        *fast,
    ]


def child(kind: str, path: Path, base: Path, train: bool, memory: int, report: int) -> None:
    """In the forked child: limit memory and time, read (and train); report; exit."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    logging.disable(logging.WARNING)  # unseen characters and the like: not what is judged
    signal.alarm(300)  # a hang guard only: a mutant takes well under a second to read
    result: dict[str, str] = {}
    try:
        outcomes = [_outcome(read) for read in readings(kind, path, base)]
        result = min(outcomes, key=lambda r: RANK.index(r["outcome"]))
        if train and result["outcome"] in OUTCOMES_OK:
            result = _command_outcome(train_command(kind, path, base, path.parent / "run"))
    except BaseException as exc:  # whatever escapes is what this child reports
        result = {"outcome": "traceback", "detail": f"{type(exc).__name__}: {exc}"}
    os.write(report, json.dumps(result).encode())
    os._exit(0)


def _outcome(read: Callable[[], None]) -> dict[str, str]:
    from rnnlab.utils.errors import find_user_error

    try:
        read()
    except MemoryError:
        return {"outcome": "memory", "detail": "MemoryError"}
    except Exception as exc:
        error = find_user_error(exc)
        if error is None:
            return {"outcome": "traceback", "detail": traceback.format_exc(limit=-3)}
        if len(str(error).splitlines()) != 1:
            return {"outcome": "traceback", "detail": f"a refusal of several lines: {error}"}
        return {"outcome": "refused", "detail": str(error)}
    return {"outcome": "read", "detail": ""}


def _command_outcome(arguments: list[str]) -> dict[str, str]:
    """``rnnlab.train``'s command in this process, as its console script runs it."""
    from rnnlab.train import main

    sys.argv = ["rnnlab.train", *arguments]
    err = io.StringIO()
    status: object = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as exit_:
            status = exit_.code or 0
        except MemoryError:
            return {"outcome": "memory", "detail": "MemoryError in rnnlab.train"}
        except Exception:
            return {"outcome": "traceback", "detail": traceback.format_exc(limit=-3)}
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
    if status == 0:
        return {"outcome": "read", "detail": "trained"}
    if status == 2 and len(lines) == 1 and "Traceback" not in err.getvalue():
        return {"outcome": "refused", "detail": lines[0]}
    return {"outcome": "traceback", "detail": f"exit {status}: {err.getvalue()[-1500:]}"}


def _vm_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def run_one(
    index: int, seed: int, bases: dict[str, Path], folder: Path, train: bool, memory_mb: int
) -> dict[str, str]:
    rng = random.Random(f"{seed}-{index}")
    kind = KINDS[index % len(KINDS)]
    base = bases[kind]
    mutant_dir = folder / f"m{index}"
    mutant_dir.mkdir()
    path = mutant_dir / f"mutant{base.suffix}"
    path.write_bytes(mutate(base.read_bytes(), kind, rng))
    memory = _vm_bytes() + memory_mb * (1 << 20)
    read_end, write_end = os.pipe()
    pid = fork_on_one_thread()
    if pid == 0:
        os.close(read_end)
        child(kind, path, base, train, memory, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reported = pipe.read()
    _, status = os.waitpid(pid, 0)
    if reported:
        result = json.loads(reported)
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
        result = {"outcome": "hang", "detail": "over 300 s"}
    else:
        result = {"outcome": "killed", "detail": f"wait status {status}"}
    return {"index": str(index), "kind": kind, "path": str(path), **result}


def fuzz(
    count: int, seed: int, train_every: int = 0, memory_mb: int = 2048, keep: Path | None = None
) -> list[dict[str, str]]:
    """Run mutants ``0 .. count - 1`` of ``seed``; every result."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # noqa: F401 - imported once here, not in every child

    import rnnlab.data.forecast
    import rnnlab.data.text
    import rnnlab.train  # noqa: F401

    results = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-fuzz-inputs-") as scratch:
        folder = keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        bases = base_files(folder)
        for index in range(count):
            train = bool(train_every) and index % train_every == 0
            results.append(run_one(index, seed, bases, folder, train, memory_mb))
    return results


def summary(results: list[dict[str, str]]) -> str:
    by_kind = Counter((r["kind"], r["outcome"]) for r in results)
    outcomes = sorted({r["outcome"] for r in results})
    lines = [f"{'kind':<14}" + "".join(f"{o:>10}" for o in outcomes)]
    for kind in KINDS:
        lines.append(f"{kind:<14}" + "".join(f"{by_kind[(kind, o)]:>10}" for o in outcomes))
    totals = Counter(r["outcome"] for r in results)
    lines.append(f"{'all':<14}" + "".join(f"{totals[o]:>10}" for o in outcomes))
    return "\n".join(lines)


def failures(results: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in results if r["outcome"] not in OUTCOMES_OK]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="mutants to run")
    parser.add_argument("--seed", type=int, default=0, help="which mutants (reproducible)")
    parser.add_argument(
        "--train-every",
        type=int,
        default=0,
        help="also train through rnnlab.train on every N-th mutant (0: never)",
    )
    parser.add_argument(
        "--memory-mb", type=int, default=2048, help="address space a child may add to the parent's"
    )
    parser.add_argument("--keep", type=Path, help="write the mutants into this folder")
    parser.add_argument("--show", type=int, default=5, help="failures to print in full")
    args = parser.parse_args(argv)
    results = fuzz(args.count, args.seed, args.train_every, args.memory_mb, args.keep)
    print(summary(results))
    failed = failures(results)
    for result in failed[: args.show]:
        print(f"\nmutant {result['index']} ({result['kind']}): {result['outcome']}")
        print(result["detail"])
    print(f"\n{len(results)} mutants, {len(failed)} failures (traceback, memory kill or hang)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

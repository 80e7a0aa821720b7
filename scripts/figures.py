"""The manual's figures, drawn from real runs into docs/figures/:

    python scripts/figures.py                      # all of them, seed 1
    python scripts/figures.py --only forecast sweep

Each figure trains what it needs as a user would (``python -m rnnlab.train`` in its own
process, seeded), then takes the image TensorBoard shows or draws from the run's outputs with
``rnnlab.plotting``'s style. Rerun it whenever results change. The runs stay in ``--runs`` (a
fresh temporary folder unless given).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.summary import summarise, sweep_figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a sibling script, not a package: found through the path entry above
import tensorboard_check

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Context:
    out: Path  # where the PNGs go
    runs: Path  # where the runs behind them go
    seed: int


def train(ctx: Context, name: str, *overrides: str) -> Path:
    """``python -m rnnlab.train`` with ``overrides`` into ``runs/name``; a multirun (``-m``)
    sweeps into that folder instead. The run (or sweep) directory."""
    target = ctx.runs / name
    if "-m" not in overrides and (target / "metrics.json").is_file():
        return target  # finished in an earlier call with the same --runs: reuse it
    where = f"hydra.sweep.dir={target}" if "-m" in overrides else f"hydra.run.dir={target}"
    command = [sys.executable, "-m", "rnnlab.train", *overrides, f"seed={ctx.seed}", where]
    command.append("trainer.enable_progress_bar=false")
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return target


def tensorboard_image(run: Path, tag: str) -> bytes:
    """The PNG a run logged to TensorBoard under ``tag`` (its last one): the manual shows
    exactly the image a reader finds in TensorBoard."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return bytes(events.Images(tag)[-1].encoded_image_string)


def write(ctx: Context, name: str, png: bytes) -> list[Path]:
    path = ctx.out / name
    path.write_bytes(png)
    return [path]


# --- the figures ---------------------------------------------------------------------------------
def forecast(ctx: Context) -> list[Path]:
    """CO2 test windows: history, actual, the LSTM's forecast and the seasonal-naive baseline."""
    run = train(ctx, "forecast", "experiment=forecast")
    return write(ctx, "forecast.png", tensorboard_image(run, "test/forecasts"))


def confusion(ctx: Context) -> list[Path]:
    """The default experiment's confusion matrix on JapaneseVowels' test split."""
    run = train(ctx, "classification")
    return write(ctx, "confusion-matrix.png", tensorboard_image(run, "test/confusion_matrix"))


def _hidden_size_sweep(ctx: Context) -> Path:
    """A small real sweep of the default experiment over two hidden sizes (run once, shared by
    the sweep chart and the TensorBoard screenshots)."""
    sweep = ctx.runs / "hidden-size-sweep"
    if not (sweep / "multirun.yaml").is_file():
        train(ctx, sweep.name, "-m", "model.encoder.hidden_size=32,64")
    return sweep


def sweep(ctx: Context) -> list[Path]:
    """The sweep's objective per configuration, as ``rnnlab.summary`` aggregates it."""
    figure = sweep_figure(summarise(_hidden_size_sweep(ctx)), unit="cross-entropy, nats")
    path = ctx.out / "sweep.png"
    figure.savefig(path)
    return [path]


def tensorboard(ctx: Context) -> list[Path]:
    """TensorBoard's Scalars, Images and HParams dashboards on the sweep, in headless Chromium."""
    why = tensorboard_check.missing_tools()
    if why:
        raise SystemExit(f"error: cannot screenshot TensorBoard: {why}")
    return tensorboard_check.check(_hidden_size_sweep(ctx), ctx.out)


def charlm(ctx: Context) -> list[Path]:
    """The character language model: a text generated from its best checkpoint (the manual's
    sample, as ``rnnlab.generate`` prints it) and TensorBoard's Text tab with the samples
    logged during training."""
    run = train(ctx, "charlm", "experiment=charlm")
    command = [
        sys.executable,
        "-m",
        "rnnlab.generate",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "prompt=Compound statements",
        "length=400",
        "temperature=0.8",
        f"seed={ctx.seed}",
        f"hydra.run.dir={ctx.runs / 'generate'}",
        "overwrite=true",
    ]
    print("$", " ".join(command[1:]), flush=True)
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    sample = ctx.out / "charlm-sample.txt"
    sample.write_text(text)
    why = tensorboard_check.missing_tools()
    if why:
        raise SystemExit(f"error: cannot screenshot TensorBoard: {why}")
    text_tab = tensorboard_check.Dashboard("text", ("sample",))
    return [sample, *tensorboard_check.check(run, ctx.out, dashboards=(text_tab,))]


# A new figure is a function (Context) -> the files it wrote, and a line here.
FIGURES: dict[str, Callable[[Context], list[Path]]] = {
    "forecast": forecast,
    "confusion": confusion,
    "sweep": sweep,
    "tensorboard": tensorboard,
    "charlm": charlm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), default=list(FIGURES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="rnnlab-figures-"))
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(out=args.out, runs=runs, seed=args.seed)
    for name in args.only:
        for path in FIGURES[name](ctx):
            print(path, flush=True)
    print(f"runs in {runs}")


if __name__ == "__main__":
    main()

"""Draw ‖∂L/∂h_t‖ over the steps of adding-problem sequences for trained runs and for the same
models at initialisation, as the diagnostics callback measures it (``state_gradient_norms``).

    python scripts/grad_flow_figure.py --out docs/figures/grad_flow_T200.png \
        logs/table/rnn_T200/seed1/checkpoints/best.ckpt \
        logs/table/lstm_T200/seed1/checkpoints/best.ckpt

Each checkpoint is a run of ``experiment=adding``. Its stored settings (cell, init,
nonlinearity, length, seed) are read as plain values to compose the same run again, whose
model, built with the run's seed, is the initialisation; the checkpoint's weights are the
trained model. Both are measured on the first ``--sequences`` test sequences. Prints, per model,
the first-step over last-step ratio (geometric mean over the sequences).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from rnnlab.callbacks.diagnostics import (
    first_over_last,
    gradient_flow_figure,
    profile_by_time,
    state_gradient_norms,
)
from rnnlab.checkpoint import CONFIG_KEY, load_checkpoint
from rnnlab.train import build_data_and_model
from rnnlab.utils.config import config_dir


def label(stored: dict[str, Any]) -> str:
    encoder = stored["model"]["encoder"]
    name = encoder["cell"]
    if name == "rnn":
        name = "irnn" if encoder["init"] == "irnn" else "rnn"
        name += f" ({encoder.get('nonlinearity') or 'tanh'})"
    return name


def measure(path: Path, sequences: int) -> dict[str, tuple[torch.Tensor, float]]:
    """``{"<model>, init": (profile, ratio), "<model>, trained": ...}`` for one checkpoint."""
    checkpoint = load_checkpoint(path)
    stored = checkpoint[CONFIG_KEY]
    encoder = stored["model"]["encoder"]
    overrides = [
        "experiment=adding",
        f"data.length={int(stored['data']['length'])}",
        f"data.test_size={sequences}",
        f"data.batch_size={sequences}",
        f"model.encoder.cell={encoder['cell']}",
        f"model.encoder.init={encoder['init']}",
        f"model.encoder.hidden_size={int(encoder['hidden_size'])}",
        f"seed={int(stored['seed'])}",
    ]
    if encoder.get("nonlinearity"):
        overrides.append(f"model.encoder.nonlinearity={encoder['nonlinearity']}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):  # nothing is written there: the run is built, not trained
        cfg.paths.output_dir = tempfile.gettempdir()
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # as train() does: same init
    datamodule, model = build_data_and_model(cfg)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    results = {}
    for stage in ("init", "trained"):
        if stage == "trained":
            model.load_state_dict(checkpoint["state_dict"])
        model.train()
        norms = state_gradient_norms(model, model.encoder, batch)["l0"]
        results[f"{label(stored)}, {stage}"] = (
            profile_by_time(norms),
            first_over_last(norms, batch.lengths),
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/grad_flow.png"))
    parser.add_argument("--sequences", type=int, default=100, help="test sequences to average")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    results: dict[str, tuple[torch.Tensor, float]] = {}
    for path in args.checkpoints:
        results.update(measure(path, args.sequences))
    length = len(next(iter(results.values()))[0])
    fig = gradient_flow_figure(
        {name: profile for name, (profile, _) in results.items()},
        f"adding problem, T = {length}: mean over {args.sequences} test sequences",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}\n")
    print("| model | ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ |\n|---|---|")
    for name, (_, ratio) in results.items():
        print(f"| {name} | {ratio:.3g} |")


if __name__ == "__main__":
    main()

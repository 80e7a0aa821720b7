"""Template training loop (Lightning ``Trainer`` from the composed config) against a hand-written
PyTorch loop doing the same work, in one process.

    .venv/bin/python scripts/bench_loop.py [--small] [--epochs 10] [--repetitions 5] [--threads 1]

Both sides get the model that ``rnnlab.train.build_data_and_model`` builds from the default
config (deep copies of the same initial weights), the DataModule's own train and val loaders
(same seeded, per-epoch shuffling, so the same batches), the same per-step seeds (train()'s
StepSeed), the model's ``configure_optimizers()`` (AdamW and the plateau scheduler stepped on the
validation loss), gradient clipping by norm 1.0 and a validation loss each epoch. Time per run
is from building the Trainer (or the optimiser) to the end of the last epoch, loaders included.
Every variant first runs one untimed epoch; then each runs ``--repetitions`` times in
alternating order (A B ..., ... B A); the table shows median and minimum and their ratios to
the raw loop. ``default`` is the Trainer as train() builds it (checkpoints written atomically,
early stopping, LR monitor, divergence guard, TensorBoard, progress bar); ``lean`` switches the
extras off; each ablation row changes one thing. A second table checks that losses and weights
of the loops agree; a third (cProfile of one default run) shows where the time goes.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MethodType, SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf, open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    CpuLoad,
    add_threads_arg,
    command_line,
    compose_train,
    machine,
    markdown_table,
    median,
    quiet,
    run_order,
    seed_all,
    set_threads,
    spread,
)

from rnnlab.callbacks.run_state import StartupTimer, StepSeed, StoreConfig
from rnnlab.train import build_data_and_model
from rnnlab.utils.config import instantiate_group

LEAN: dict[str, Any] = {
    "callbacks": None,
    "logger": None,
    "trainer.enable_progress_bar": False,
    "trainer.enable_checkpointing": False,
    "trainer.num_sanity_val_steps": 0,
}


@dataclass(frozen=True)
class Variant:
    """A template run: config keys set on top of the default config, and how the module's
    torchmetrics are handled: ``step`` as shipped (updated and logged every step), ``epoch``
    (updated every step, computed and logged once per epoch: the proposed change) or ``off``."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: str = "step"
    extras: bool = True  # train()'s own StoreConfig and StartupTimer
    # train()'s StepSeed reseeds before every step (dropout masks follow the step number), and
    # the raw loop does the same: "shipped", "fast" (FastStepSeed, same numbers) or "off"
    # (other dropout masks, so other numbers)
    step_seed: str = "shipped"


RAW = "raw PyTorch loop"
MAIN = [
    Variant("template, default (as train() builds it)"),
    Variant("template, lean (no progress bar/logger/checkpoints/sanity)", LEAN, extras=False),
]
ABLATIONS = [
    Variant("default - progress bar", {"trainer.enable_progress_bar": False}),
    Variant("default - TensorBoard logger (and LR monitor)", {"logger": None}),
    Variant("default - LearningRateMonitor", {"callbacks.learning_rate_monitor": None}),
    Variant(
        "default - ModelCheckpoint",
        {"callbacks.model_checkpoint": None, "trainer.enable_checkpointing": False},
    ),
    Variant("default - EarlyStopping", {"callbacks.early_stopping": None}),
    Variant("default - DivergenceGuard", {"callbacks.divergence_guard": None}),
    Variant("default - StepSeed (changes dropout masks)", step_seed="off"),
    Variant("default, StepSeed seeding the CPU generator only", step_seed="fast"),
    Variant("default - atomic checkpoint IO (fsync)", {"trainer.plugins": None}),
    Variant("default - sanity val check", {"trainer.num_sanity_val_steps": 0}),
    Variant("default, log_every_n_steps=50 (not 5)", {"trainer.log_every_n_steps": 50}),
    Variant("default + model summary", {"trainer.enable_model_summary": True}),
    Variant("default - torchmetrics (no update, no log)", metrics="off"),
    Variant("default, torchmetrics logged once per epoch", metrics="epoch"),
    Variant("lean - torchmetrics", LEAN, "off", extras=False),
    Variant("lean, torchmetrics logged once per epoch", LEAN, "epoch", extras=False),
    Variant("lean, metrics once per epoch, fast StepSeed", LEAN, "epoch", False, step_seed="fast"),
]


class FastStepSeed(StepSeed):
    """StepSeed as proposed: the same seeds, but the CPU generator is seeded directly.
    ``torch.manual_seed`` also visits every device backend (CUDA, MPS, XPU, ...) on each call,
    about 0.1 ms; CUDA generators need seeding only once CUDA is in use."""

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        step_seed = (self.seed * 1_000_003 + trainer.global_step) % 2**32
        random.seed(step_seed)
        np.random.seed(step_seed)
        torch.default_generator.manual_seed(step_seed)
        if torch.cuda.is_initialized():
            torch.cuda.manual_seed_all(step_seed)


@dataclass
class Result:
    seconds: float
    train_loss: float
    val_loss: float
    weights: dict[str, torch.Tensor]
    val_f1: float = float("nan")  # the template's torchmetrics value, where it logs one


def _patched_step(self: Any, batch: Any, stage: str, metrics: Any) -> torch.Tensor:
    """SequenceClassifier._step without ``log_dict(metrics)`` on every step; the metric update
    stays unless ``self.bench_metrics == "off"``. Loss and its logging are unchanged."""
    x, lengths, y = batch
    logits = self(x, lengths)
    loss = F.cross_entropy(logits, y)
    if self.bench_metrics == "epoch":
        metrics.update(logits, y)
    self.log(
        f"{stage}/loss",
        loss,
        on_step=stage == "train",
        on_epoch=True,
        prog_bar=True,
        batch_size=len(y),
        sync_dist=stage != "train",
    )
    return loss


def _epoch_end(stage: str) -> Any:
    """Hook that computes, logs and resets a stage's metrics once (same values: Lightning would
    compute the same accumulated state at epoch end)."""

    def hook(self: Any) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        self.log_dict(metrics.compute(), prog_bar=stage != "train")
        metrics.reset()

    return hook


def patch_metrics(model: L.LightningModule, mode: str) -> None:
    if mode == "step":
        return
    model.bench_metrics = mode
    model._step = MethodType(_patched_step, model)
    if mode == "epoch":
        model.on_train_epoch_end = MethodType(_epoch_end("train"), model)
        model.on_validation_epoch_end = MethodType(_epoch_end("val"), model)


def configure(cfg: DictConfig, settings: dict[str, Any], output_dir: str) -> DictConfig:
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
        for key, value in settings.items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def build_trainer(cfg: DictConfig, v: Variant) -> L.Trainer:
    """The Trainer exactly as ``rnnlab.train.train`` builds it (train() has no function for
    just this part, so these lines mirror it), minus what the variant switches off."""
    callbacks = instantiate_group(cfg.get("callbacks"))
    if v.extras:
        callbacks.append(StoreConfig(cfg))
    if v.step_seed != "off":
        callbacks.append((StepSeed if v.step_seed == "shipped" else FastStepSeed)(cfg.seed))
    if v.extras:
        callbacks.append(StartupTimer())
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # as train(): LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def run_template(
    cfg: DictConfig, model0: L.LightningModule, datamodule: L.LightningDataModule, v: Variant
) -> Result:
    model = copy.deepcopy(model0)
    patch_metrics(model, v.metrics)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as out:
        run_cfg = configure(cfg, v.settings, out)
        seed_all(cfg.seed)
        start = time.perf_counter()
        trainer = build_trainer(run_cfg, v)
        trainer.fit(model, datamodule=datamodule)
        seconds = time.perf_counter() - start
    metrics = trainer.callback_metrics
    return Result(
        seconds,
        float(metrics["train/loss_epoch"]),
        float(metrics["val/loss"]),
        {k: t.detach().clone() for k, t in model.state_dict().items()},
        float(metrics.get("val/f1", float("nan"))),
    )


def run_raw(
    cfg: DictConfig, model0: L.LightningModule, datamodule: L.LightningDataModule
) -> Result:
    """The same work written out: the epoch's shuffle (``set_epoch``, as Lightning calls it), the
    per-step seeds of train()'s StepSeed, AdamW + plateau scheduler, clipping by norm, and a
    validation loss."""
    model = copy.deepcopy(model0)
    seed_all(cfg.seed)
    start = time.perf_counter()
    configured = model.configure_optimizers()
    optimizer = configured["optimizer"]
    scheduler = configured["lr_scheduler"]["scheduler"]
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    samplers = [train_loader.sampler, getattr(train_loader.batch_sampler, "sampler", None)]
    # the template's per-step seeds, set the cheap way (same numbers)
    step_seed, step = FastStepSeed(cfg.seed), SimpleNamespace(global_step=0)
    clip = cfg.trainer.gradient_clip_val
    train_loss = val_loss = torch.tensor(float("nan"))
    for epoch in range(cfg.trainer.max_epochs):
        for sampler in samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        model.train()
        total, count = torch.zeros(()), 0
        for x, lengths, y in train_loader:
            step_seed.on_train_batch_start(step)  # type: ignore[arg-type]
            step.global_step += 1
            loss = F.cross_entropy(model(x, lengths), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            total += loss.detach() * len(y)
            count += len(y)
        train_loss = total / count
        model.eval()
        total, count = torch.zeros(()), 0
        with torch.inference_mode():  # as Lightning validates
            for x, lengths, y in val_loader:
                total += F.cross_entropy(model(x, lengths), y) * len(y)
                count += len(y)
        val_loss = total / count
        scheduler.step(val_loss.item())
    seconds = time.perf_counter() - start
    return Result(
        seconds,
        float(train_loss),
        float(val_loss),
        {k: t.detach().clone() for k, t in model.state_dict().items()},
    )


# Where the default template's time goes: (row, file name suffix, function names or "on_*" for
# every hook of a callback). Each row sums the cumulative time of its entry functions.
COMPONENTS = [
    ("Trainer construction", "trainer/trainer.py", ("__init__",)),
    ("sanity validation check", "trainer/trainer.py", ("_run_sanity_check",)),
    ("self.log / log_dict calls (Lightning's result collection)", "core/module.py", ("log",)),
    ("torchmetrics MetricCollection.update", "torchmetrics/collections.py", ("update",)),
    ("progress bar hooks", "progress/rich_progress.py", "on_*"),
    ("progress bar hooks (tqdm)", "progress/tqdm_progress.py", "on_*"),
    ("ModelCheckpoint hooks (best + last saves)", "callbacks/model_checkpoint.py", "on_*"),
    ("  of which atomic write + fsync", "rnnlab/utils/checkpoint_io.py", ("save_checkpoint",)),
    ("EarlyStopping hooks", "callbacks/early_stopping.py", "on_*"),
    ("DivergenceGuard hooks", "rnnlab/callbacks/divergence.py", "on_*"),
    ("StepSeed hook", "rnnlab/callbacks/run_state.py", ("on_train_batch_start",)),
    ("LearningRateMonitor hooks", "callbacks/lr_monitor.py", "on_*"),
    ("logger writes (TensorBoard)", "logger_connector/logger_connector.py", ("log_metrics",)),
    # the work itself, the same in the raw loop
    ("model forward (train and val)", "rnnlab/models/classifier.py", ("forward",)),
    ("backward", "torch/autograd/graph.py", ("_engine_run_backward",)),
    ("gradient clipping", "torch/nn/utils/clip_grad.py", ("clip_grad_norm_",)),
    ("AdamW update", "torch/optim/adam.py", ("adam",)),
]


def profile_default(
    cfg: DictConfig, model0: L.LightningModule, datamodule: L.LightningDataModule
) -> list[list[Any]]:
    """cProfile one default template run; rows: component, seconds, share of the run. The
    profiler slows Python more than native code, so read shares, not absolute times."""
    profiler = cProfile.Profile()
    profiler.enable()
    run_template(cfg, model0, datamodule, MAIN[0])
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(cumulative for _, _, _, cumulative, _ in stats.values())
    rows = []
    for name, suffix, functions in COMPONENTS:
        seconds = sum(
            entry[3]
            for (path, _, function), entry in stats.items()
            if path.endswith(suffix)
            and (function.startswith("on_") if functions == "on_*" else function in functions)
        )
        if seconds:
            rows.append([name, seconds, 100 * seconds / total])
    return [["whole run under cProfile", total, 100.0], *rows]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="2 epochs, 1 repetition, no ablation")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    add_threads_arg(parser)
    parser.add_argument(
        "--ablate", action=argparse.BooleanOptionalAction, default=None, help="ablation rows"
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="ablation rows whose names contain one of these"
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cProfile breakdown of one default run (default: on unless --small)",
    )
    args = parser.parse_args(argv)
    if args.small:
        args.epochs, args.repetitions = 2, 1
    if args.ablate is None:
        args.ablate = not args.small or args.only is not None
    if args.profile is None:
        args.profile = not args.small
    return args


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown tables."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    quiet()
    set_threads(args.threads)
    overrides = [
        f"seed={args.seed}",
        "trainer.accelerator=cpu",
        f"trainer.max_epochs={args.epochs}",
    ]
    cfg = compose_train(overrides, tempfile.gettempdir())
    seed_all(args.seed)
    datamodule, model0 = build_data_and_model(cfg)
    ablations = [
        v for v in ABLATIONS if args.only is None or any(part in v.name for part in args.only)
    ]
    variants = {v.name: v for v in MAIN + (ablations if args.ablate else [])}

    def run(name: str, run_cfg: DictConfig) -> Result:
        if name == RAW:
            return run_raw(run_cfg, model0, datamodule)
        return run_template(run_cfg, model0, datamodule, variants[name])

    names = [RAW, *variants]
    warm_cfg = configure(cfg, {"trainer.max_epochs": 1}, tempfile.gettempdir())
    for name in names:  # untimed: imports, allocator, first TensorBoard writer
        run(name, warm_cfg)
    results: dict[str, list[Result]] = {name: [] for name in names}
    with CpuLoad() as load:
        for _, name in run_order(names, args.repetitions):
            results[name].append(run(name, cfg))
    profile = profile_default(cfg, model0, datamodule) if args.profile else []

    raw = [r.seconds for r in results[RAW]]
    timing = markdown_table(
        [
            "loop",
            "s per run (median)",
            "ratio to raw (medians)",
            "s per run (min)",
            "ratio to raw (mins)",
            "spread (max-min)/median",
        ],
        [
            [name, median(s), median(s) / median(raw), min(s), min(s) / min(raw), spread(s)]
            for name, s in ((name, [r.seconds for r in rs]) for name, rs in results.items())
        ],
    )
    ref = results[RAW][0]
    agreement = markdown_table(
        [
            "loop",
            "final train loss",
            "final val loss",
            "final val F1",
            "abs Δ train loss to raw",
            "max abs Δ weight to raw",
        ],
        [
            [
                name,
                rs[0].train_loss,
                rs[0].val_loss,
                rs[0].val_f1,
                abs(rs[0].train_loss - ref.train_loss),
                max(float((rs[0].weights[k] - w).abs().max()) for k, w in ref.weights.items()),
            ]
            for name, rs in results.items()
        ],
    )
    batches = len(datamodule.train_dataloader())
    text = "\n\n".join(
        [
            f"command: {command_line('bench_loop.py', argv)}",
            f"{machine()}; {cfg.data.name}, {batches} train batches of {cfg.data.batch_size}, "
            f"{args.epochs} epochs, {args.repetitions} repetitions; {load.describe()}",
            timing,
            agreement,
        ]
        + (
            [markdown_table(["default template, where the time goes", "s", "%"], profile)]
            if profile
            else []
        )
    )
    print(text)
    return text


if __name__ == "__main__":
    main()

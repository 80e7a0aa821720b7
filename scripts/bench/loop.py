"""Template training loop (Lightning ``Trainer`` from the composed config) against hand-written
PyTorch loops doing the same work, in one process.

    .venv/bin/python scripts/bench/loop.py [--small] [--epochs 10] [--repetitions 10] [--threads 1]
        [Hydra overrides of a classification run, e.g. data.batch_size=64]

Every loop gets the model that ``rnnlab.train.build_data_and_model`` builds from the default
config (deep copies of the same initial weights), the DataModule's own train and val loaders
(the same seeded, per-epoch shuffling, so the same batches), the same per-step seeds (train()'s
StepSeed), the model's ``configure_optimizers()`` (AdamW and the plateau scheduler stepped on the
validation loss), gradient clipping by norm and, each epoch, the validation loss and the
model's own torchmetrics (accuracy, precision, recall, F1 on train and val batches).

Three pairs are compared:

- ``raw loop`` against ``template, lean``: the work above and nothing else (the Trainer without
  progress bar, logger, checkpoints, callbacks and sanity check);
- ``bare Lightning`` against ``template, lean``: the same work written as a plain
  LightningModule on the same lean Trainer, so the ratio is rnnlab's own cost beyond Lightning's;
- ``raw loop + outputs`` against ``template, default`` (the Trainer as ``rnnlab.train`` builds
  it): also a tqdm progress bar, TensorBoard scalars (the step loss every
  ``log_every_n_steps`` steps, the epoch losses, metrics and learning rate), the best and the
  last checkpoint written atomically (temporary file, fsync, rename) each epoch, and early
  stopping on the validation loss. The template also runs its two-batch sanity validation.

Time per run is from building the Trainer (or the optimiser) to the end of the last epoch. Each
loop first runs one untimed epoch; then the loops run ``--repetitions`` times in alternating
order (A B ..., ... B A). A ratio is the median over repetitions of the template's time over its
raw counterpart's time in the same repetition: pairing cancels slow drifts of the machine.
Ablation rows change one thing of the default template. A second table checks that losses and
weights agree; a third (cProfile of one default run) shows where the time goes.

``--write-docs`` writes the timing table and the floor table into docs/benchmarks.md between the
markers ``bench:loop`` followed by the Hydra overrides as typed, each after a ``:``
(``bench:loop:model.encoder.hidden_size=256``); ablation rows, unless ``--no-ablate``, are
written with the others.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    alternate,
    bench_parser,
    markdown_table,
    median,
    parse,
    report,
    run_script,
    spread,
)
from lightning_harness import build, lean_trainer, machine, seed_all

from rnnlab.callbacks.run_state import StartupTimer, StepSeed
from rnnlab.checkpoint import AtomicCheckpointIO
from rnnlab.train import build_trainer

LEAN: dict[str, Any] = {
    "callbacks": None,
    "logger": None,
    "trainer.enable_progress_bar": False,
    "trainer.enable_checkpointing": False,
    "trainer.num_sanity_val_steps": 0,
}
RAW, RAW_OUT = "raw loop", "raw loop + outputs"
# the same work as a LightningModule written plainly (the Lightning docs' way) on a lean Trainer
BARE = "bare Lightning (plain LightningModule, same work)"
# what a user writes by hand: the same loop and outputs, with the textbook pack -> LSTM encoder
TEXTBOOK = "raw loop + outputs, packed encoder (textbook)"
DEFAULT = "template, default (as train() builds it)"


@dataclass(frozen=True)
class Variant:
    """A template run: config keys set on top of the default config; ``baseline`` names the raw
    loop doing the same work."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    baseline: str = RAW_OUT


MAIN = [
    Variant("template, lean", LEAN, RAW),
    Variant(DEFAULT),
]
ABLATIONS = [
    Variant("default - progress bar", {"trainer.enable_progress_bar": False}),
    Variant("default - TensorBoard logger (and LR monitor)", {"logger": None}),
    Variant(
        "default - ModelCheckpoint",
        {"callbacks.model_checkpoint": None, "trainer.enable_checkpointing": False},
    ),
    Variant("default - atomic checkpoint IO (fsync)", {"trainer.plugins": None}),
    Variant("default - EarlyStopping", {"callbacks.early_stopping": None}),
    Variant("default - DivergenceGuard", {"callbacks.divergence_guard": None}),
    Variant("default - sanity val check", {"trainer.num_sanity_val_steps": 0}),
    Variant("default, log_every_n_steps=50 (not 5)", {"trainer.log_every_n_steps": 50}),
]


@dataclass
class Result:
    seconds: float
    train_loss: float
    val_loss: float
    val_f1: float
    weights: dict[str, torch.Tensor]


def configure(cfg: DictConfig, settings: dict[str, Any], output_dir: str) -> DictConfig:
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
        for key, value in settings.items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in model.state_dict().items()}


def run_template(
    cfg: DictConfig, model0: L.LightningModule, datamodule: L.LightningDataModule, v: Variant
) -> Result:
    model = copy.deepcopy(model0)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as out:
        run_cfg = configure(cfg, v.settings, out)
        seed_all(cfg.seed)
        start = time.perf_counter()
        trainer = build_trainer(run_cfg, StartupTimer())
        trainer.fit(model, datamodule=datamodule)
        seconds = time.perf_counter() - start
    return _fitted(seconds, trainer, model)


def _fitted(seconds: float, trainer: L.Trainer, model: torch.nn.Module) -> Result:
    """A Lightning loop's result: its time, its last logged losses and F1, ``model``'s weights."""
    metrics = trainer.callback_metrics
    return Result(
        seconds,
        float(metrics["train/loss_epoch"]),
        float(metrics["val/loss"]),
        float(metrics["val/f1"]),
        _weights(model),
    )


def run_raw(
    cfg: DictConfig,
    model0: L.LightningModule,
    datamodule: L.LightningDataModule,
    outputs: bool,
) -> Result:
    """The same work written out: the epoch's shuffle (``set_epoch``, as Lightning calls it), the
    per-step seeds of StepSeed, AdamW + plateau scheduler, clipping by norm, the model's own
    torchmetrics, the validation loss; with ``outputs`` also a progress bar, TensorBoard
    scalars, best and last checkpoints and early stopping."""
    model = copy.deepcopy(model0)
    seed_all(cfg.seed)
    with tempfile.TemporaryDirectory(prefix="bench-raw-") as out:
        start = time.perf_counter()
        configured = model.configure_optimizers()
        optimizer = configured["optimizer"]
        scheduler = configured["lr_scheduler"]["scheduler"]
        train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
        samplers = [train_loader.sampler, getattr(train_loader.batch_sampler, "sampler", None)]
        step_seed, state = StepSeed(cfg.seed), SimpleNamespace(global_step=0)
        clip, log_every = cfg.trainer.gradient_clip_val, cfg.trainer.log_every_n_steps
        writer = SummaryWriter(out) if outputs else None
        checkpoint_io = AtomicCheckpointIO()  # the template's writer: temp file, fsync, rename
        best, waited = float("inf"), 0
        train_loss = val_loss = torch.tensor(float("nan"))
        scores: dict[str, torch.Tensor] = {}
        for epoch in range(cfg.trainer.max_epochs):
            for sampler in samplers:
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
            model.train()
            total, count = torch.zeros(()), 0
            batches = tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not outputs)
            for batch in batches:
                x, lengths, y = batch.x, batch.lengths, batch.y
                step_seed.on_train_batch_start(state, model)  # type: ignore[arg-type]
                logits = model(x, lengths)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                state.global_step += 1
                model.stage_metrics.update("train", "classes", logits.detach(), y)
                total += loss.detach() * len(y)
                count += len(y)
                if writer is not None and state.global_step % log_every == 0:
                    writer.add_scalar("train/loss_step", loss.item(), state.global_step)
            train_loss = total / count
            scores = dict(model.stage_metrics.compute("train")["classes"])  # and resets
            model.eval()
            total, count = torch.zeros(()), 0
            with torch.inference_mode():  # as Lightning validates
                for batch in val_loader:
                    x, lengths, y = batch.x, batch.lengths, batch.y
                    logits = model(x, lengths)
                    total += F.cross_entropy(logits, y) * len(y)
                    count += len(y)
                    model.stage_metrics.update("val", "classes", logits, y)
            val_loss = total / count
            scores.update(model.stage_metrics.compute("val")["classes"])
            scheduler.step(val_loss.item())
            if writer is None:
                continue
            scalars = {"train/loss_epoch": train_loss, "val/loss": val_loss, **scores}
            scalars["lr-AdamW"] = torch.tensor(optimizer.param_groups[0]["lr"])
            for name, value in scalars.items():
                writer.add_scalar(name, value.item(), state.global_step)
            checkpoint = {
                "epoch": epoch,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "datamodule": datamodule.state_dict(),
                "config": OmegaConf.to_container(cfg, resolve=True),
            }
            improved = val_loss.item() < best
            if improved:
                best, waited = val_loss.item(), 0
                checkpoint_io.save_checkpoint(checkpoint, Path(out) / "best.ckpt")
            else:
                waited += 1
            checkpoint_io.save_checkpoint(checkpoint, Path(out) / "last.ckpt")
            if waited >= cfg.callbacks.early_stopping.patience:
                break
        if writer is not None:
            writer.close()
        seconds = time.perf_counter() - start
    return Result(
        seconds, float(train_loss), float(val_loss), float(scores["val/f1"]), _weights(model)
    )


class BareLightning(L.LightningModule):
    """The raw loop's work as a user would write it in plain Lightning: the same network and
    torchmetrics, the loss averaged by hand and logged once per epoch with ``self.log``, the
    epoch metrics computed and logged with ``self.log_dict``; the model's optimiser and plateau
    scheduler."""

    def __init__(self, model: L.LightningModule) -> None:
        super().__init__()
        self.model = model
        self.sums = {"train": [torch.zeros(()), 0], "val": [torch.zeros(()), 0]}

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        logits = self.model(batch.x, batch.lengths)
        loss = F.cross_entropy(logits, batch.y)
        self.model.stage_metrics.update(stage, "classes", logits.detach(), batch.y)
        self.sums[stage][0] += loss.detach() * len(batch.y)
        self.sums[stage][1] += len(batch.y)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "val")

    def end_epoch(self, stage: str, name: str) -> None:
        total, count = self.sums[stage]
        self.log(name, total / count)
        self.sums[stage] = [torch.zeros(()), 0]
        self.log_dict(self.model.stage_metrics.compute(stage)["classes"])

    def on_train_epoch_end(self) -> None:
        self.end_epoch("train", "train/loss_epoch")

    def on_validation_epoch_end(self) -> None:
        self.end_epoch("val", "val/loss")

    def configure_optimizers(self) -> Any:
        return self.model.configure_optimizers()


def run_bare(
    cfg: DictConfig, model0: L.LightningModule, datamodule: L.LightningDataModule
) -> Result:
    """``BareLightning`` on the config's Trainer without extras, with the per-step seeds."""
    model = copy.deepcopy(model0)
    bare = BareLightning(model)
    seed_all(cfg.seed)
    start = time.perf_counter()
    trainer = lean_trainer(cfg, callbacks=[StepSeed(cfg.seed)])
    trainer.fit(bare, datamodule=datamodule)
    return _fitted(time.perf_counter() - start, trainer, model)


class TrivialModel(L.LightningModule):
    """Almost no compute on the same batches: the mean of each padded sequence through one
    linear layer. Lightning's own per-step and per-epoch cost is what remains of its time."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(features, classes)

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch.x, batch.y
        return F.cross_entropy(self.linear(x.mean(dim=1)), y)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.loss(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.loss(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters())


def lightning_cost(cfg: DictConfig, datamodule: L.LightningDataModule, classes: int) -> float:
    """Seconds a bare Trainer (no callbacks, logger, checkpoints, progress bar or sanity check)
    takes beyond a hand-written loop for the trivial model on the same batches, epochs and
    clipping: the least any Lightning-based loop can add to this benchmark's runs."""
    features = next(iter(datamodule.train_dataloader())).x.shape[-1]
    seed_all(cfg.seed)
    model = TrivialModel(features, classes)
    start = time.perf_counter()
    lean_trainer(cfg).fit(model, datamodule=datamodule)
    lightning = time.perf_counter() - start

    seed_all(cfg.seed)
    model = TrivialModel(features, classes)
    start = time.perf_counter()
    optimizer = model.configure_optimizers()
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    for _ in range(cfg.trainer.max_epochs):
        model.train()
        for batch in train_loader:
            loss = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            for batch in val_loader:
                model.loss(batch)
    return lightning - (time.perf_counter() - start)


# Where the default template's time goes: (row, file name suffix, function names or "on_*" for
# every hook of a callback). Each row sums the cumulative time of its entry functions.
COMPONENTS = [
    ("Trainer construction", "trainer/trainer.py", ("__init__",)),
    ("sanity validation check", "trainer/trainer.py", ("_run_sanity_check",)),
    ("self.log / log_dict calls (Lightning's result collection)", "core/module.py", ("log",)),
    ("torchmetrics MetricCollection.update", "torchmetrics/collections.py", ("update",)),
    ("torchmetrics MeanMetric.update (epoch losses)", "torchmetrics/aggregation.py", ("update",)),
    ("progress bar hooks", "progress/rich_progress.py", "on_*"),
    ("progress bar hooks (tqdm)", "progress/tqdm_progress.py", "on_*"),
    ("ModelCheckpoint hooks (best + last saves)", "callbacks/model_checkpoint.py", "on_*"),
    ("  of which atomic write + fsync", "rnnlab/checkpoint/format.py", ("save_checkpoint",)),
    ("EarlyStopping hooks", "callbacks/early_stopping.py", "on_*"),
    ("DivergenceGuard hooks", "rnnlab/callbacks/divergence.py", "on_*"),
    ("StepSeed hook", "rnnlab/callbacks/run_state.py", ("on_train_batch_start",)),
    ("LearningRateMonitor hooks", "callbacks/lr_monitor.py", "on_*"),
    ("logger writes (TensorBoard)", "logger_connector/logger_connector.py", ("log_metrics",)),
    # the work itself, the same in the raw loops
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
    run_template(cfg, model0, datamodule, MAIN[1])
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
    parser = bench_parser(
        __doc__.splitlines()[0],
        "2 epochs, 1 repetition, no ablation",
        10,
        epochs=10,
        overrides="Hydra overrides of the (classification) run config",
    )
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
    args = parse(parser, argv, small={"epochs": 2, "repetitions": 1})
    if args.ablate is None:
        args.ablate = not args.small or args.only is not None
    if args.profile is None:
        args.profile = not args.small
    return args


def paired_ratio(times: list[float], baseline: list[float]) -> float:
    """Median over repetitions of time / the baseline's time in the same repetition."""
    return median([t / b for t, b in zip(times, baseline, strict=True)])


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's tables apart in the docs: the Hydra overrides."""
    return args.overrides


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown tables."""
    return run_script("loop", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Time every loop; the report and the tables written to the docs."""
    overrides = ["trainer.accelerator=cpu", f"trainer.max_epochs={args.epochs}", *args.overrides]
    cfg, datamodule, model0 = build(overrides, args.seed)
    ablations = [
        v for v in ABLATIONS if args.only is None or any(part in v.name for part in args.only)
    ]
    variants = {v.name: v for v in MAIN + (ablations if args.ablate else [])}

    textbook = copy.deepcopy(model0)
    textbook.encoder.impl = "packed"

    def run(name: str, run_cfg: DictConfig) -> Result:
        if name in (RAW, RAW_OUT):
            return run_raw(run_cfg, model0, datamodule, outputs=name == RAW_OUT)
        if name == TEXTBOOK:
            return run_raw(run_cfg, textbook, datamodule, outputs=True)
        if name == BARE:
            return run_bare(run_cfg, model0, datamodule)
        return run_template(run_cfg, model0, datamodule, variants[name])

    names = [RAW, RAW_OUT, BARE, *variants, TEXTBOOK]
    warm_cfg = configure(cfg, {"trainer.max_epochs": 1}, tempfile.gettempdir())
    floor: list[float] = []
    classes = len(model0.class_names)

    def timed(_: int, name: str) -> Result:
        result = run(name, cfg)
        if name == RAW:
            floor.append(lightning_cost(cfg, datamodule, classes))
        return result

    # untimed, as each loop's first run below: imports, allocator, first TensorBoard writer
    lightning_cost(warm_cfg, datamodule, classes)
    results, load = alternate(names, args.repetitions, timed, lambda n: run(n, warm_cfg))
    profile = profile_default(cfg, model0, datamodule) if args.profile else []

    seconds = {name: [r.seconds for r in rs] for name, rs in results.items()}

    def row(name: str, baseline: str) -> list[Any]:
        times, base = seconds[name], seconds[baseline]
        ratios = [paired_ratio(times, base), min(times) / min(base)]
        return [name, baseline, median(times), min(times), *ratios, spread(times)]

    rows = [row(name, variants[name].baseline if name in variants else name) for name in seconds]
    # the template against the same work in plain Lightning, and the user's view: the default
    # template against the loop written by hand with packing
    rows += [row(name, baseline) for name, baseline in ((MAIN[0].name, BARE), (DEFAULT, TEXTBOOK))]
    timing = markdown_table(
        [
            "loop",
            "compared with",
            "s per run (median)",
            "s per run (min)",
            "time ratio (median of paired)",
            "time ratio (mins)",
            "spread (max-min)/median",
        ],
        rows,
    )
    raw_median = median(seconds[RAW])
    floor_table = markdown_table(
        [
            "Lightning's own cost (bare Trainer, trivial model, same batches)",
            "s per run (median)",
            "as a share of the raw loop's time",
            "lowest ratio a Lightning loop can reach here",
        ],
        [
            [
                "bare Trainer - hand-written loop",
                median(floor),
                median(floor) / raw_median,
                1 + median(floor) / raw_median,
            ]
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
    tables = [timing, floor_table, agreement]
    if profile:
        tables.append(markdown_table(["default template, where the time goes", "s", "%"], profile))
    text = report(
        "loop.py",
        argv,
        f"{machine()}; {cfg.data.name}, {batches} train batches of {cfg.data.batch_size}, "
        f"{args.epochs} epochs, {args.repetitions} repetitions; {load.describe()}",
        *tables,
    )
    return text, f"{timing}\n\n{floor_table}"


if __name__ == "__main__":
    main()

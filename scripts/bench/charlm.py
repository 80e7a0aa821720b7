"""Characters per second of the character language model, training and generating, each beside
a baseline in the same process:

- training: ``experiment=charlm`` through Lightning (the template's step, carried state,
  clipping, metrics) against the hand-written ``pytorch/examples`` loop (embedding, LSTM,
  linear, AdamW, clip, detach) on the same windows of the same corpus, same sizes;
- generation: ``rnnlab.generate``'s sampler, one step per character with the state carried,
  against re-reading the whole text so far for every new character (what a model without a
  streaming step has to do).

    .venv/bin/python scripts/bench/charlm.py [--small] [--threads 1] [--hidden 256 512]

Each row is the median over ``--repetitions`` (variants alternate order); ratios above 1 mean
rnnlab is faster.

``--write-docs`` writes both tables into docs/benchmarks.md between the markers named
``bench:charlm`` (it has no device option or Hydra overrides; the ``--hidden`` sizes are rows).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from harness import bench_parser, command_line, markdown_table, median, parse, run_order, run_script
from hydra.utils import instantiate
from lightning_harness import LEAN_TRAINER, compose_train, machine, seed_all
from torch import nn

from rnnlab.data.text import Vocabulary, default_corpus
from rnnlab.models.language import LanguageModel


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = bench_parser(__doc__.splitlines()[0], "a seconds-long smoke run", 3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed training windows")
    parser.add_argument("--length", type=int, default=300, help="characters generated")
    small = {"hidden": [32], "steps": 3, "length": 40, "repetitions": 1}
    return parse(parser, argv, {**small, "batch_size": 4, "bptt": 16})


def docs_variant(args: argparse.Namespace) -> list[str]:
    """What tells this run's tables apart in the docs: nothing (no device, no overrides)."""
    return []


class _StepTimer(L.Callback):
    """Wall time of the training batches after the first (which pays for warm-up)."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        self.started = time.perf_counter() if trainer.global_step > 0 else None

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.started is not None:
            self.seconds += time.perf_counter() - self.started


def _model(hidden: int, args: argparse.Namespace, vocab: int) -> LanguageModel:
    cfg = compose_train(
        [
            "experiment=charlm",
            f"model.encoder.hidden_size={hidden}",
            f"model.vocab_size={vocab}",
            "model.scheduler=null",  # no validation here for a plateau scheduler to watch
        ],
        "unused",
    )
    seed_all(0)
    return instantiate(cfg.model)


def template_chars_per_s(model: LanguageModel, windows: list[tuple[torch.Tensor, ...]]) -> float:
    """Train on ``windows`` through Lightning (the template's own step)."""
    from rnnlab.batch import Batch

    batches = [Batch(x=x, lengths=torch.full((len(x),), x.shape[1]), y=y) for x, y in windows]
    timer = _StepTimer()
    trainer = L.Trainer(
        max_epochs=1,
        gradient_clip_val=1.0,
        callbacks=[timer],
        accelerator="cpu",
        **LEAN_TRAINER,
    )
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, collate_fn=_first))
    return sum(x.numel() for x, _ in windows[1:]) / timer.seconds


def _first(items: list) -> object:
    return items[0]


def handwritten_chars_per_s(model: LanguageModel, windows: list[tuple[torch.Tensor, ...]]) -> float:
    """The pytorch/examples loop on the same network's modules and windows."""
    embedding, rnn, decoder = model.embedding, model.encoder.rnn, model.decoder
    params = [p for m in (embedding, rnn, decoder) for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=0.003, weight_decay=0.1)
    state = None
    seconds = 0.0
    for i, (x, y) in enumerate(windows):
        started = time.perf_counter()
        out, state = rnn(embedding(x), state)
        loss = nn.functional.cross_entropy(decoder(out).transpose(1, 2), y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        state = tuple(s.detach() for s in state)
        if i > 0:
            seconds += time.perf_counter() - started
    return sum(x.numel() for x, _ in windows[1:]) / seconds


@torch.no_grad()
def rereading_chars_per_s(model: LanguageModel, prompt: list[int], length: int) -> float:
    """Sample by running the model over the whole text so far for each new character."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    ids = list(prompt)
    started = time.perf_counter()
    for _ in range(length):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(torch.multinomial(logits[0, -1].softmax(-1), 1, generator=generator)))
    return length / (time.perf_counter() - started)


def carried_chars_per_s(model: LanguageModel, prompt: list[int], length: int) -> float:
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    model.generate(prompt, length, temperature=1.0, generator=generator)
    return length / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print and return the Markdown tables."""
    return run_script("charlm", argv, parse_args, docs_variant, measure)


def measure(args: argparse.Namespace, argv: list[str]) -> tuple[str, str]:
    """Time training and generation beside their baselines; the report and its tables."""
    warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
    text, source = default_corpus()
    vocab = Vocabulary.of(text)
    ids = torch.from_numpy(vocab.encode(text))
    streams = args.batch_size
    width = (len(ids) - 1) // streams
    inputs = ids[: streams * width].view(streams, width)
    targets = ids[1 : streams * width + 1].view(streams, width)
    windows = [
        (inputs[:, s : s + args.bptt], targets[:, s : s + args.bptt])
        for s in range(0, args.bptt * (args.steps + 1), args.bptt)
    ]
    prompt = vocab.encode("The ").tolist()
    train_rows, generate_rows = [], []
    for hidden in args.hidden:
        timings: dict[str, list[float]] = {}

        def fresh(h: int = hidden) -> LanguageModel:
            return _model(h, args, len(vocab))

        variants = {
            "rnnlab (Lightning)": lambda: template_chars_per_s(fresh(), windows),
            "hand-written loop": lambda: handwritten_chars_per_s(fresh(), windows),
            "rnnlab generate (carried state)": lambda: carried_chars_per_s(
                fresh(), prompt, args.length
            ),
            "re-read the text per character": lambda: rereading_chars_per_s(
                fresh(), prompt, args.length
            ),
        }
        for _, name in run_order(list(variants), args.repetitions):
            timings.setdefault(name, []).append(variants[name]())
        ours, theirs = median(timings["rnnlab (Lightning)"]), median(timings["hand-written loop"])
        train_rows.append([hidden, round(ours), round(theirs), round(ours / theirs, 3)])
        carried = median(timings["rnnlab generate (carried state)"])
        reread = median(timings["re-read the text per character"])
        generate_rows.append([hidden, round(carried), round(reread, 1), round(carried / reread, 1)])
    tables = "\n\n".join(
        [
            markdown_table(
                [
                    "hidden units",
                    "training chars/s, rnnlab",
                    "training chars/s, hand-written loop",
                    "ratio (rnnlab / hand-written)",
                ],
                train_rows,
            ),
            markdown_table(
                [
                    "hidden units",
                    f"generated chars/s, carried state ({args.length} chars)",
                    "generated chars/s, re-reading the text",
                    "speed-up",
                ],
                generate_rows,
            ),
        ]
    )
    report = (
        f"`{command_line('charlm.py', argv)}`; {machine()}; corpus {source}, "
        f"LSTM, {args.batch_size} streams x {args.bptt} characters per window\n\n{tables}"
    )
    return report, tables


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
